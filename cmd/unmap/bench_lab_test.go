package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/bench"
	"github.com/unmap-dev/unmap/test/priv"
)

func runBenchLab(args ...string) (stdout, stderr string, err error) {
	cmd := newBenchLabCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// TestBenchLabFlags: flags that cannot be used are refused before any lab
// is built.
func TestBenchLabFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--paths", "native,teredo"},
		{"--connects", "-1"},
		{"--duration", "-1s"},
	} {
		if _, _, err := runBenchLab(args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// TestBenchLabNative runs the command for real on the native path (the
// unmap path needs the unmap binary, which a test binary is not): the
// table has every figure in both offload modes, and --json saves the same
// rows, each goodput with its streams, for `unmap bench report`.
func TestBenchLabNative(t *testing.T) {
	priv.Require(t)
	saved := filepath.Join(t.TempDir(), "lab.json")
	out, logs, err := runBenchLab("--short", "--paths", "native", "--rounds", "2", "--json", saved)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	for _, want := range []string{"tcp goodput up (Gbit/s)", "tcp goodput down (Gbit/s)", "udp rtt median (ms)", "largest IPv6 packet up (bytes)", "tcp connect p99 (ms)", "first-packet loss (flows)", "gro/gso/tso off"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if got, want := strings.Count(out, "\nnative "), 2*len(bench.Metrics); got != want {
		t.Errorf("%d native rows, want %d (%d figures × 2 offload modes):\n%s", got, want, len(bench.Metrics), out)
	}
	res, err := bench.ReadLabResults(saved)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2*len(bench.Metrics) || res.Machine.Kernel == "" || res.Config.Rounds != 2 {
		t.Errorf("saved %d rows, machine %+v, config %+v", len(res.Rows), res.Machine, res.Config)
	}
	for _, m := range []bench.Metric{bench.Goodput, bench.GoodputDown} {
		if row, _ := res.Report().Find(bench.Native, bench.Off, m); len(row.Samples) != 2 {
			t.Errorf("%s: saved samples %v, want one per stream (2)", m, row.Samples)
		}
	}
}
