package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/bench"
	"github.com/unmap-dev/unmap/bench/xdpbench"
)

func runBenchReport(args ...string) (string, error) {
	cmd := newBenchReportCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// TestBenchReportFromSaved: the report made from saved results (written
// here through the bench types, as --json writes them; goodput only, as
// a partial run or a hand-made file may be), with no measuring (and so no
// root): the page, the plots it has data for and the results it was made
// from are in --out.
func TestBenchReportFromSaved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "docs", "bench")
	saved := t.TempDir()
	m := bench.Machine{CPU: "cpu", Cores: 2, Kernel: "6.1", Commit: "abc", Go: "go1.26", Date: time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)}
	var rows []bench.Row
	for path, v := range map[string]float64{bench.Native: 10, bench.Unmap: 5} {
		for _, mode := range []bench.Offloads{bench.AsIs, bench.Off} {
			rows = append(rows, bench.Row{Path: path, Offloads: mode, Metric: bench.Goodput, Value: v, Samples: []float64{v * 0.9, v, v * 1.1}})
		}
	}
	lab := &bench.LabResults{Machine: m, Rows: rows}
	x := bench.XDPResultsOf(m, 254, []xdpbench.Result{
		{Path: "baseline", Repeats: 254, PerPkt: 10, Rounds: []time.Duration{10}},
		{Path: "tcp", Repeats: 254, PerPkt: 35, Rounds: []time.Duration{35}},
	})
	if err := bench.WriteJSON(filepath.Join(saved, "lab.json"), lab); err != nil {
		t.Fatal(err)
	}
	if err := bench.WriteJSON(filepath.Join(saved, "xdp.json"), x); err != nil {
		t.Fatal(err)
	}
	cg := &bench.CGNATResults{Machine: m, Rows: []bench.CGNATRow{
		{Metric: bench.CGNATPPSSmall, Mappings: 10000, Unmap: 900e3, Kernel: 300e3},
		{Metric: bench.CGNATMemory, Mappings: 1000000, Unmap: 100, Kernel: 400},
	}}
	if err := bench.WriteJSON(filepath.Join(saved, "cgnat.json"), cg); err != nil {
		t.Fatal(err)
	}
	out, err := runBenchReport("--out", dir, "--lab", filepath.Join(saved, "lab.json"), "--xdp", filepath.Join(saved, "xdp.json"),
		"--cgnat", filepath.Join(saved, "cgnat.json"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range []string{bench.ReportPage, bench.LabJSON, bench.XDPJSON, bench.CGNATJSON, "goodput.svg", "xdp.svg", "cgnat.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, bench.ReportPage))
	// Results with goodput only: the plots of the other figures (a log
	// axis with no values made gonum panic) are neither drawn nor shown.
	for _, f := range []string{"connect.svg", "rtt.svg", "mtu.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil || strings.Contains(string(page), f) {
			t.Errorf("%s drawn or shown with no data for it", f)
		}
	}
	if !strings.Contains(string(page), "| tcp goodput up (Gbit/s) | 10.00 (9.00–11.00) | 5.00 (4.50–5.50) | 0.50x |") ||
		!strings.Contains(string(page), "| tcp | 35 | 35–35 | +25 ns | 3.50x |") ||
		!strings.Contains(string(page), "| udp packets/s, small set | 10000 | 0.900M | 0.300M | 3.00x |") {
		t.Errorf("page:\n%s", page)
	}
	// A report made again from its own results is the same page.
	if _, err := runBenchReport("--out", dir, "--lab", filepath.Join(dir, bench.LabJSON), "--xdp", filepath.Join(dir, bench.XDPJSON),
		"--cgnat", filepath.Join(dir, bench.CGNATJSON)); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, bench.ReportPage))
	if !bytes.Equal(page, again) {
		t.Errorf("made again from its own results, the page differs:\n%s\n---\n%s", page, again)
	}
}

// TestBenchReportRefuses: flags that leave nothing to report, and a
// results file that cannot be read, fail before anything is measured.
func TestBenchReportRefuses(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"rows": 3}`), 0o644)
	for _, args := range [][]string{
		{"--skip-lab", "--skip-xdp", "--skip-cgnat", "--out", t.TempDir()},
		{"--out", t.TempDir(), "--skip-lab", "--skip-xdp", "--cgnat", bad},
		{"--skip-xdp"},
		{"--out", t.TempDir(), "--lab", bad},
		{"--out", t.TempDir(), "--skip-lab", "--xdp", bad},
		{"--out", t.TempDir(), "--paths", "native,teredo"},
	} {
		if _, err := runBenchReport(args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
