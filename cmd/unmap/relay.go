package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner of relay): replace this placeholder with the real subcommand.
func newRelayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "relay",
		Short: "relay (not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("relay: not built yet")
		},
	}
}
