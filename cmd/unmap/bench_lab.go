package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/bench"
)

// newBenchLabCmd is `unmap bench lab`: the end-to-end benchmarks in the
// network-namespace lab (bench).
func newBenchLabCmd() *cobra.Command {
	var (
		cfg     bench.Config
		paths   string
		short   bool
		jsonOut string
	)
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "End-to-end benchmarks in the lab: unmap vs native IPv6 vs wireguard-go (needs root)",
		Long: `lab builds the network-namespace lab once per path, all up at once, and
measures from the site's lan host to the IPv6-only server srv6:

  native     IPv6 routed on every link, no CGN: the limit of this lab
  unmap      unmap edge and unmap relay (this binary) through the CGN
  wireguard  wireguard-go on edge and relay through the same CGN,
             configured over its UAPI socket from Go; built with go
             install unless --wireguard-go names a binary

For each path, with the lab's offloads as they are and then with GRO, GSO
and TSO off on every veth: TCP goodput of one stream up (lan to srv6) and
down (srv6 to lan), a Go sender and receiver (the median of --rounds
streams each way, the paths taking turns), the largest IPv6 packet that
passes up and down (UDP probes that never fragment), TCP connect time
(median and p99), UDP round-trip time on one established flow (median and
p99), and the first-packet loss of new UDP flows (one datagram each, no
resend). It prints one row per figure with its ratio to the native path in
the same run; throughput here is noisy, so compare ratios, not runs. With
--json it also saves the results, samples included, for 'unmap bench
report'. It exits non-zero only when a figure cannot be measured. The full
run takes about three minutes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if short {
				shortLab(cmd, &cfg)
			}
			if paths != "" {
				cfg.Paths = strings.Split(paths, ",")
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the unmap binary to run the agents: %w", err)
			}
			cfg.Unmap = self
			errw := cmd.ErrOrStderr()
			cfg.Log = func(format string, args ...any) {
				fmt.Fprintf(errw, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
			}
			m := bench.ThisMachine()
			rep, err := bench.Run(cmd.Context(), cfg)
			if rep != nil && len(rep.Rows) > 0 && jsonOut != "-" { // standard output is the JSON's alone
				if werr := rep.WriteTable(cmd.OutOrStdout()); werr != nil {
					err = errors.Join(err, werr)
				}
			}
			if err == nil && jsonOut != "" {
				err = bench.WriteJSONTo(cmd.OutOrStdout(), jsonOut, bench.LabResultsOf(m, rep))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Goodput, "duration", 0, "length of each TCP goodput stream (0: 3s)")
	f.IntVar(&cfg.Rounds, "rounds", 0, "goodput streams per path and mode, taking turns across paths; the median is shown (0: 3)")
	f.IntVar(&cfg.Connects, "connects", 0, "TCP connects timed per path and mode (0: 200)")
	f.IntVar(&cfg.Flows, "flows", 0, "new UDP flows for first-packet loss per path and mode (0: 100)")
	f.StringVar(&paths, "paths", "", "comma-separated paths to measure (default: "+strings.Join(bench.Paths, ",")+")")
	f.StringVar(&cfg.WireGuard, "wireguard-go", "", "wireguard-go binary to use instead of building "+bench.WireGuardModule)
	f.IntVar(&cfg.Pings, "pings", 0, "UDP round trips timed on one flow per path and mode (0: 200)")
	f.BoolVar(&short, "short", false, "a few seconds per path instead of the full run")
	f.StringVar(&jsonOut, "json", "", "also write the results as JSON to this file (-: standard output), for 'unmap bench report --lab'")
	return cmd
}
