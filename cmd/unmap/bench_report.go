package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/bench"
	"github.com/unmap-dev/unmap/bench/xdpbench"
)

// newBenchReportCmd is `unmap bench report`: both benchmarks (or their
// saved results) made into a Markdown page with plots, for the docs.
func newBenchReportCmd() *cobra.Command {
	var (
		out, labFile, xdpFile string
		cgnatFile             string
		skipLab, skipXDP      bool
		skipCGNAT             bool
		short                 bool
		repeats               int
		paths                 string
		cfg                   bench.Config
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Run the benchmarks (or read their --json results) and write a Markdown report with SVG plots",
		Long: `report writes a report of the lab, XDP and CGNAT benchmarks into --out: a
page (README.md) with every figure and its ratio to the baseline of the
same run (the native path for the lab, the empty XDP program for the
datapath, nftables snat for the relay's CGNAT), the machine, kernel,
commit and date they were measured on, SVG plots (goodput per path in
both directions, connect and round-trip time distributions, largest
packet per path, cost per XDP path with its spread over rounds, the
CGNAT's rates against the kernel's), and the results as lab.json,
xdp.json and cgnat.json.

Without --lab, --xdp or --cgnat it runs the benchmark (root; the full lab
run takes several minutes, the XDP run about one, the CGNAT run a few).
With them it reads results saved by 'unmap bench lab --json', 'unmap
bench xdp --json' and 'unmap bench cgnat --json' (or an earlier
report's), so a report can be made again without measuring:

  sudo unmap bench report --out docs/bench
  unmap bench report --out docs/bench --lab docs/bench/lab.json --xdp docs/bench/xdp.json --cgnat docs/bench/cgnat.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			if skipLab && skipXDP && skipCGNAT {
				return errors.New("--skip-lab, --skip-xdp and --skip-cgnat leave nothing to report")
			}
			if repeats < 1 {
				return errors.New("--xdp-repeats must be positive")
			}
			if short {
				shortLab(cmd, &cfg)
			}
			if paths != "" {
				cfg.Paths = strings.Split(paths, ",")
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			var (
				lab *bench.LabResults
				x   *bench.XDPResults
				cg  *bench.CGNATResults
				err error
			)
			// Saved results are read first: a bad file fails before
			// minutes of measuring.
			if labFile != "" {
				if lab, err = bench.ReadLabResults(labFile); err != nil {
					return err
				}
			}
			if xdpFile != "" {
				if x, err = bench.ReadXDPResults(xdpFile); err != nil {
					return err
				}
			}
			if cgnatFile != "" {
				if cg, err = bench.ReadCGNATResults(cgnatFile); err != nil {
					return err
				}
			}
			if lab == nil && !skipLab {
				if lab, err = measureLab(cmd, cfg); err != nil {
					return err
				}
				// Saved at once: a failure of the XDP run or of the
				// report keeps the minutes of lab results.
				if err := saveResults(out, bench.LabJSON, lab); err != nil {
					return err
				}
				fmt.Fprintf(errw, "... lab results saved to %s\n", filepath.Join(out, bench.LabJSON))
			}
			if x == nil && !skipXDP {
				res, m, err := runBenchXDP(cmd.Context(), errw, repeats)
				if err != nil {
					return err
				}
				x = bench.XDPResultsOf(m, repeats, res)
				if err := saveResults(out, bench.XDPJSON, x); err != nil {
					return err
				}
				fmt.Fprintf(errw, "... xdp results saved to %s\n", filepath.Join(out, bench.XDPJSON))
			}
			if cg == nil && !skipCGNAT {
				if cg, err = measureCGNAT(cmd); err != nil {
					return err
				}
				if err := saveResults(out, bench.CGNATJSON, cg); err != nil {
					return err
				}
				fmt.Fprintf(errw, "... cgnat results saved to %s\n", filepath.Join(out, bench.CGNATJSON))
			}
			if err := bench.WriteReport(out, lab, x, cg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "report written to %s\n", filepath.Join(out, bench.ReportPage))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "folder to write the report into (created if missing)")
	f.StringVar(&labFile, "lab", "", "lab results saved by 'unmap bench lab --json' instead of running the lab")
	f.StringVar(&xdpFile, "xdp", "", "XDP results saved by 'unmap bench xdp --json' instead of running the XDP bench")
	f.BoolVar(&skipLab, "skip-lab", false, "leave the lab out (unless --lab names results)")
	f.BoolVar(&skipXDP, "skip-xdp", false, "leave the XDP datapath out (unless --xdp names results)")
	f.StringVar(&cgnatFile, "cgnat", "", "CGNAT results saved by 'unmap bench cgnat --json' instead of running the CGNAT bench")
	f.BoolVar(&skipCGNAT, "skip-cgnat", false, "leave the CGNAT bench out (unless --cgnat names results)")
	f.IntVar(&repeats, "xdp-repeats", 10_000_000, "XDP program runs per path")
	f.DurationVar(&cfg.Goodput, "duration", 0, "length of each TCP goodput stream (0: 3s)")
	f.IntVar(&cfg.Rounds, "rounds", 5, "goodput streams per path, direction and mode; their spread is shown")
	f.IntVar(&cfg.Connects, "connects", 0, "TCP connects timed per path and mode (0: 200)")
	f.IntVar(&cfg.Pings, "pings", 0, "UDP round trips timed per path and mode (0: 200)")
	f.IntVar(&cfg.Flows, "flows", 0, "new UDP flows for first-packet loss per path and mode (0: 100)")
	f.StringVar(&paths, "paths", "", "comma-separated lab paths to measure (default: "+strings.Join(bench.Paths, ",")+")")
	f.StringVar(&cfg.WireGuard, "wireguard-go", "", "wireguard-go binary to use instead of building "+bench.WireGuardModule)
	f.BoolVar(&short, "short", false, "a few seconds per lab path instead of the full run")
	return cmd
}

// saveResults writes results as JSON into dir, creating it.
func saveResults(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return bench.WriteJSON(filepath.Join(dir, name), v)
}

// measureLab runs the lab benchmark with this binary as the agents, a
// line of progress per step on standard error, and returns its results.
func measureLab(cmd *cobra.Command, cfg bench.Config) (*bench.LabResults, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the unmap binary to run the agents: %w", err)
	}
	cfg.Unmap = self
	errw := cmd.ErrOrStderr()
	cfg.Log = func(format string, args ...any) {
		fmt.Fprintf(errw, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	m := bench.ThisMachine()
	rep, err := bench.Run(cmd.Context(), cfg)
	if err != nil {
		return nil, err
	}
	return bench.LabResultsOf(m, rep), nil
}

// runBenchXDP runs the XDP benchmark with progress on w (a rewriting
// line on a terminal, a line a round otherwise) and returns its results
// and the machine they were measured on.
func runBenchXDP(ctx context.Context, w io.Writer, repeats int) ([]xdpbench.Result, bench.Machine, error) {
	p, last := newProgress(w), 0
	m := bench.ThisMachine()
	res, err := bench.XDPProgress(ctx, repeats, func(round, rounds int, path string) {
		switch {
		case p.tty:
			p.Step("xdp: round %d of %d: %s", round, rounds, path)
		case round != last:
			p.Step("xdp: round %d of %d, every path", round, rounds)
		}
		last = round
	})
	p.Clear()
	return res, m, err
}

// shortLab sets the lab's figures to bench.Short's, except those a flag
// sets.
func shortLab(cmd *cobra.Command, cfg *bench.Config) {
	s := bench.Short()
	f := cmd.Flags()
	for name, set := range map[string]func(){
		"duration": func() { cfg.Goodput = s.Goodput },
		"rounds":   func() { cfg.Rounds = s.Rounds },
		"connects": func() { cfg.Connects = s.Connects },
		"pings":    func() { cfg.Pings = s.Pings },
		"flows":    func() { cfg.Flows = s.Flows },
	} {
		if !f.Changed(name) {
			set()
		}
	}
}

// measureCGNAT runs the CGNAT bench with its defaults, this binary as
// the relay, progress on standard error.
func measureCGNAT(cmd *cobra.Command) (*bench.CGNATResults, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the unmap binary to run the relay: %w", err)
	}
	errw := cmd.ErrOrStderr()
	m := bench.ThisMachine()
	res, err := bench.RunCGNAT(cmd.Context(), bench.CGNATConfig{Unmap: self, Log: func(format string, args ...any) {
		fmt.Fprintf(errw, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}})
	if err != nil {
		return nil, err
	}
	res.Machine = m
	return res, nil
}
