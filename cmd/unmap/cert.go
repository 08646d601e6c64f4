package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner of cert): replace this placeholder with the real subcommand.
func newCertCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cert",
		Short: "cert (not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("cert: not built yet")
		},
	}
}
