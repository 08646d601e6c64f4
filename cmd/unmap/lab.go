package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner of lab): replace this placeholder with the real subcommand.
func newLabCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lab",
		Short: "lab (not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("lab: not built yet")
		},
	}
}
