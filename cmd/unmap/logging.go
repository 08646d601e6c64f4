package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// logOptions are the flags every subcommand shares for log/slog output.
type logOptions struct {
	format string
	level  string
}

func (o *logOptions) addFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&o.format, "log-format", "text", "log format: text or json")
	cmd.PersistentFlags().StringVar(&o.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (o *logOptions) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", o.level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch o.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", o.format)
}
