package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner of edge): replace this placeholder with the real subcommand.
func newEdgeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "edge",
		Short: "edge (not built yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("edge: not built yet")
		},
	}
}
