package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

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
// table has every figure in both offload modes.
func TestBenchLabNative(t *testing.T) {
	priv.Require(t)
	out, logs, err := runBenchLab("--short", "--paths", "native")
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	for _, want := range []string{"tcp goodput (Gbit/s)", "largest IPv6 packet up (bytes)", "tcp connect p99 (ms)", "first-packet loss (flows)", "gro/gso/tso off"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if got := strings.Count(out, "\nnative "); got != 14 {
		t.Errorf("%d native rows, want 14 (7 figures × 2 offload modes):\n%s", got, out)
	}
}
