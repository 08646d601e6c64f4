package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/priv"
)

func runLabCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runLabCmdProgress(t, args...)
	return out, err
}

// runLabCmdProgress runs `unmap lab args` and returns its standard
// output and, apart, its progress lines (standard error).
func runLabCmdProgress(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newLabCmd()
	if len(args) == 0 || args[0] != "down" {
		// The lab runs the agents of a real unmap binary, never this
		// test binary (which would run the tests again).
		args = append(args, "--unmap-binary", lab.BuildUnmap(t))
	}
	// Standard output holds the tables; standard error the progress
	// lines, which name checks too: keep them apart, so that a row is
	// found in the table or not at all.
	var out, progress bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&progress)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), progress.String(), err
}

var labPrefix = regexp.MustCompile(`lab (unmap-[0-9a-f]{6})`)

func namespacesOf(t *testing.T, prefix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(lab.NetnsDir, prefix+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLabCommand runs `unmap lab`: a table with every check ok, a
// progress line (not a terminal: plain lines) for each check of either
// tour, and the lab gone afterwards.
//
// PATH holds only Go's own directory while it runs, as on a fresh machine
// with Go and nothing else: no row may need ip, nft, traceroute6 or wg.
func TestLabCommand(t *testing.T) {
	priv.Require(t)
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	t.Setenv("PATH", filepath.Join(strings.TrimSpace(string(goroot)), "bin"))
	out, progress, err := runLabCmdProgress(t)
	if err != nil {
		t.Fatalf("unmap lab: %v\n%s\nprogress:\n%s", err, out, progress)
	}
	base, with := lab.BaselineChecks(), lab.UnmapChecks(netip.Addr{})
	for _, want := range []string{
		"... building the lab: ",
		fmt.Sprintf("... without unmap, check %d of %d: %s\n", len(base), len(base), base[len(base)-1].Name),
		// The tour with unmap opens with the row of the host's address.
		fmt.Sprintf("... with unmap, check %d of %d: %s\n", len(with)+1, len(with)+1, with[len(with)-1].Name),
		"... tearing the lab down\n",
	} {
		if !strings.Contains(progress, want) {
			t.Errorf("no progress line %q in:\n%s", want, progress)
		}
	}
	for _, c := range append(lab.BaselineChecks(), lab.UnmapChecks(netip.Addr{})...) {
		if !strings.Contains(out, c.Name) {
			t.Errorf("no row %q in:\n%s", c.Name, out)
		}
	}
	if strings.Contains(out, "FAIL") || !strings.Contains(out, "torn down") {
		t.Errorf("output:\n%s", out)
	}
	m := labPrefix.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no lab name in:\n%s", out)
	}
	if left := namespacesOf(t, m[1]); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestLabKeepAndDown leaves a lab up with --keep, checks the nsenter lines
// point at real namespaces, and removes it with `unmap lab down`.
func TestLabKeepAndDown(t *testing.T) {
	priv.Require(t)
	out, err := runLabCmd(t, "--keep", "--cgn-mode", "random", "--cgn-udp-timeout", "30s")
	m := labPrefix.FindStringSubmatch(out)
	// Whatever happens below, do not leave a kept lab behind; only this
	// one: others kept on this machine, or built by tests running at the
	// same time, are not this test's to remove.
	if m != nil {
		t.Cleanup(func() { _, _ = runLabCmd(t, "down", m[1]) })
	}
	if err != nil {
		t.Fatalf("unmap lab --keep: %v\n%s", err, out)
	}
	if m == nil || !strings.Contains(out, "cgn random, cgn UDP timeout 30s") {
		t.Fatalf("output:\n%s", out)
	}
	for _, r := range lab.Roles {
		line := "nsenter --net=" + filepath.Join(lab.NetnsDir, m[1]+"-"+string(r))
		if !strings.Contains(out, line) {
			t.Errorf("no %q in:\n%s", line, out)
		}
	}
	if got := namespacesOf(t, m[1]); len(got) != len(lab.Roles) {
		t.Fatalf("kept lab has %d namespaces: %v", len(got), got)
	}
	out, err = runLabCmd(t, "down", m[1])
	if err != nil {
		t.Fatalf("unmap lab down: %v\n%s", err, out)
	}
	for _, r := range lab.Roles {
		if !strings.Contains(out, "removed "+m[1]+"-"+string(r)) {
			t.Errorf("down did not say it removed %s-%s:\n%s", m[1], r, out)
		}
	}
	if left := namespacesOf(t, m[1]); len(left) != 0 {
		t.Errorf("left behind after down: %v", left)
	}
}

// TestLabFlags checks that bad flags are refused before anything is built.
func TestLabFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--cgn-mode", "symmetric"}, `--cgn-mode: cgn mode "symmetric" is not preserve or random`},
		{[]string{"--cgn-udp-timeout", "1500ms"}, "lab options: CGNUDPTimeout: 1.5s is not a whole, non-negative number of seconds"},
		{[]string{"extra"}, `unknown command "extra" for "lab"`},
		{[]string{"down", "unmap-12345"}, `"unmap-12345" is not a lab prefix (unmap-<6 hex>)`},
	} {
		_, err := runLabCmd(t, tc.args...)
		if err == nil || err.Error() != tc.err {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
		}
	}
}
