package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/test/bench"
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

// TestBenchReportFromSaved: the report made from saved results, with no
// measuring (and so no root): the page, its plots and the results it
// was made from are in --out.
func TestBenchReportFromSaved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "docs", "bench")
	fix := "../../test/bench/testdata/report/"
	out, err := runBenchReport("--out", dir, "--lab", fix+"lab.json", "--xdp", fix+"xdp.json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range []string{bench.ReportPage, bench.LabJSON, bench.XDPJSON, "goodput.svg", "connect.svg", "rtt.svg", "mtu.svg", "xdp.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, bench.ReportPage))
	if !strings.Contains(string(page), "| tcp goodput up (Gbit/s) | 10.00 (9.00–11.00) | 5.00 (4.50–5.50) | 0.50x |") {
		t.Errorf("page:\n%s", page)
	}
	// A report made again from its own results is the same page.
	if _, err := runBenchReport("--out", dir, "--lab", filepath.Join(dir, bench.LabJSON), "--xdp", filepath.Join(dir, bench.XDPJSON)); err != nil {
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
		{"--skip-lab", "--skip-xdp", "--out", t.TempDir()},
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
