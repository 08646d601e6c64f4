// Command unmap is the one binary of the project: the edge and relay
// agents, the network-namespace lab, benchmarks and operator tools. Each
// subcommand lives in a file of its own and only parses flags; the work is
// done in the packages it calls.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "unmap:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var logs logOptions
	root := &cobra.Command{
		Use:   "unmap",
		Short: "Un-map a carrier-grade NAT: full-MTU IPv6 and IPv4, both ways",
		Long: `unmap gives a site behind someone else's IPv4 CGNAT routed IPv6 and a public
IPv4 from a relay, rewriting headers in XDP instead of adding a tunnel header.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			l, err := logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			slog.SetDefault(l)
			return nil
		},
	}
	logs.addFlags(root)
	root.AddCommand(
		newEdgeCmd(),
		newRelayCmd(),
		newLabCmd(),
		newBenchCmd(),
		newStatusCmd(),
		newCertCmd(),
		newVersionCmd(),
		newManCmd(),
	)
	return root
}
