package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/xlat"
)

// The table shows each path's cost over the first (baseline) row.
func TestPrintBench(t *testing.T) {
	var b bytes.Buffer
	printBench(&b, []xdpbench.Result{
		{Path: "baseline", PerPkt: 5 * time.Nanosecond, Verdict: xlat.Pass, Repeats: 10},
		{Path: "tcp", PerPkt: 48 * time.Nanosecond, Verdict: xlat.Pass, Repeats: 10, Note: "both ways"},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "+43 ns") || !strings.Contains(lines[1], "-") {
		t.Fatalf("table:\n%s", b.String())
	}
}
