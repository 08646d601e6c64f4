package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/bench"
	"github.com/unmap-dev/unmap/bench/xdpbench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure unmap on this machine: the XDP datapath, end to end in the lab, or the relay's CGNAT",
	}
	cmd.AddCommand(newBenchXDPCmd(), newBenchLabCmd(), newBenchCGNATCmd(), newBenchReportCmd())
	return cmd
}

func newBenchXDPCmd() *cobra.Command {
	var (
		repeats int
		jsonOut string
	)
	cmd := &cobra.Command{
		Use:   "xdp",
		Short: "Cost per packet of each XDP path, over an empty program (needs root)",
		Long: `Load the XDP datapath, run each path's packet through it with BPF_PROG_RUN
(no interface, no traffic) and print the kernel-measured time per packet
(paths take turns in 10 rounds; the figure is the median of the round means)
and its cost over an empty XDP_PASS program measured in the same run.
Translation paths alternate between the two directions of one flow, because
the kernel reuses one buffer across repeats; their figure is the mean of both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repeats < 1 {
				return fmt.Errorf("--repeats must be positive")
			}
			res, m, err := runBenchXDP(cmd.Context(), cmd.ErrOrStderr(), repeats)
			if err != nil {
				return err
			}
			if jsonOut != "-" { // standard output is the JSON's alone
				printBench(cmd.OutOrStdout(), res)
			}
			if jsonOut != "" {
				return bench.WriteJSONTo(cmd.OutOrStdout(), jsonOut, bench.XDPResultsOf(m, repeats, res))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&repeats, "repeats", 10_000_000, "program runs per path")
	cmd.Flags().StringVar(&jsonOut, "json", "", "also write the results as JSON to this file (-: standard output), for 'unmap bench report --xdp'")
	return cmd
}

func printBench(w io.Writer, res []xdpbench.Result) {
	if len(res) == 0 {
		return
	}
	base := res[0].PerPkt
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\tns/pkt\tover baseline\tverdict\truns\tnote")
	for i, r := range res {
		over := "-"
		if i > 0 {
			over = fmt.Sprintf("%+d ns", (r.PerPkt - base).Nanoseconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%v\t%d\t%s\n", r.Path, r.PerPkt.Nanoseconds(), over, r.Verdict, r.Repeats, r.Note)
	}
	tw.Flush()
}
