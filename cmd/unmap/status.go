package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner of status): replace this placeholder with the real subcommand.
func newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "status (not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("status: not built yet")
		},
	}
}
