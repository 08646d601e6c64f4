package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/bench"
)

// newBenchCGNATCmd is `unmap bench cgnat`: the relay's CGNAT against the
// kernel's NAT in the lab (bench, "The CGNAT bench").
func newBenchCGNATCmd() *cobra.Command {
	var (
		cfg     bench.CGNATConfig
		short   bool
		jsonOut string
	)
	cmd := &cobra.Command{
		Use:   "cgnat",
		Short: "The relay's XDP CGNAT against nftables snat in the lab: packets/s, new mappings/s, goodput, memory (needs root)",
		Long: `cgnat builds the network-namespace lab twice, both up at once: in one the
relay namespace runs 'unmap relay' (this binary) with a cgnat section, in
the other nftables snat to the same pool (persistent, conntrack), as an
operator would configure the kernel. 512 subscribers behind the relay's
sub link send 64-byte UDP frames to srv4, made by a BPF program run in
live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) on the sub host's veth, and
a counting XDP program on inet's veth from the relay counts what arrives
translated. The paths take turns; each figure is the median of --rounds.

  new mappings/s      frames of flows never seen, from subscribers that
                      hold a block with free ports
  udp packets/s       frames over --small and --large established mappings
                      (the kernel over at most what nf_conntrack_max lets
                      its namespace hold)
  tcp goodput         one stream from the sub host to srv4
  memory per mapping  the relay's CGNAT maps (memlock) over the mappings
                      it holds at --large; the kernel's slab growth over
                      its conntrack entries

It prints each figure of both paths, unmap's ratio to the kernel's (with
its range round by round) and issue 12's target; a floor (the same chain with an XDP redirect and no
NAT); and where each path's time per packet goes (BPF run-time
statistics, on for one extra send). With --json it also saves the results
for 'unmap bench report --cgnat'. The full run takes a few minutes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if short {
				s := bench.CGNATShort()
				if !cmd.Flags().Changed("small") {
					cfg.Small = s.Small
				}
				if !cmd.Flags().Changed("large") {
					cfg.Large = s.Large
				}
				if !cmd.Flags().Changed("frames") {
					cfg.Frames = s.Frames
				}
				if !cmd.Flags().Changed("new-flows") {
					cfg.NewFlows = s.NewFlows
				}
				if !cmd.Flags().Changed("rounds") {
					cfg.Rounds = s.Rounds
				}
				if !cmd.Flags().Changed("duration") {
					cfg.Goodput = s.Goodput
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the unmap binary to run the relay: %w", err)
			}
			cfg.Unmap = self
			errw := cmd.ErrOrStderr()
			cfg.Log = func(format string, args ...any) {
				fmt.Fprintf(errw, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
			}
			m := bench.ThisMachine()
			res, err := bench.RunCGNAT(cmd.Context(), cfg)
			if res != nil && len(res.Rows) > 0 && jsonOut != "-" {
				if werr := res.WriteTable(cmd.OutOrStdout()); werr != nil {
					err = errors.Join(err, werr)
				}
			}
			if err == nil && jsonOut != "" {
				res.Machine = m
				err = bench.WriteJSONTo(cmd.OutOrStdout(), jsonOut, res)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Small, "small", 0, "established mappings of the small set (0: 10000)")
	f.IntVar(&cfg.Large, "large", 0, "established mappings of the large set (0: 1000000)")
	f.IntVar(&cfg.Frames, "frames", 0, "frames sent per packet-rate measurement (0: 2000000)")
	f.IntVar(&cfg.NewFlows, "new-flows", 0, "new flows per new-mapping measurement (0: 64512)")
	f.IntVar(&cfg.Rounds, "rounds", 0, "turns each measurement takes on each path; the median is shown (0: 3)")
	f.DurationVar(&cfg.Goodput, "duration", 0, "length of each TCP goodput stream (0: 3s)")
	f.BoolVar(&short, "short", false, "a few seconds per path instead of the full run")
	f.StringVar(&jsonOut, "json", "", "also write the results as JSON to this file (-: standard output), for 'unmap bench report --cgnat'")
	return cmd
}
