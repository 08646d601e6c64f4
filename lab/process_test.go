package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestProcess starts a program in a namespace, waits for its output, and
// stops it; a program that exits early makes WaitFor fail at once.
func TestProcess(t *testing.T) {
	l := newForTest(t, Options{})
	edge := l.NS(Edge)
	p := edge.StartProcess(t, exec.Command("sh", "-c", `echo "ready in $(readlink /proc/self/ns/net)"; exec sleep 30`))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	line, err := p.WaitFor(ctx, "ready")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", nsInode(t, edge.Path())); !strings.HasSuffix(line, want) {
		t.Errorf("process says %q, want it in %s", line, want)
	}
	if done, _ := p.Exited(); done {
		t.Fatal("sleep ended early")
	}
	start := time.Now()
	err = p.Stop()
	if !p.stoppedBySignal(err) {
		t.Errorf("Stop: %v, want killed by SIGTERM", err)
	}
	// SIGTERM ends sleep at once; Stop's fallback kill comes after 5 s.
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Stop took %v", d)
	}

	q := edge.StartProcess(t, exec.Command("sh", "-c", "echo bye; exit 3"))
	if _, err := q.WaitFor(ctx, "never printed"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("WaitFor on an exited process: %v", err)
	}
	if got := q.Output(); len(got) != 1 || got[0] != "bye" {
		t.Errorf("output %q", got)
	}
}

// TestBuildBinary builds a program of the module and runs it inside a
// namespace, as the end-to-end tests will run the agents (BuildUnmap is
// the same call for ./cmd/unmap).
func TestBuildBinary(t *testing.T) {
	l := newForTest(t, Options{})
	bin := BuildBinary(t, "./lab/testdata/netnsid")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.NS(LAN).Output(ctx, bin)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := fmt.Sprintf("net:[%d]", nsInode(t, l.NS(LAN).Path())); strings.TrimSpace(string(out)) != want {
		t.Errorf("netnsid in lan printed %q, want %s", out, want)
	}
}
