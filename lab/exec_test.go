package lab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// nsInode is the inode that identifies a network namespace.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestCommandRunsInNamespace proves that a child started through NS.Start
// lives in the namespace (its /proc/self/ns/net is the namespace's inode)
// and sees only that namespace's links, while the test's own threads stay
// in the root namespace.
func TestCommandRunsInNamespace(t *testing.T) {
	l := newForTest(t, Options{})
	ctx := context.Background()
	for _, r := range []Role{LAN, Inet} {
		n := l.NS(r)
		out, err := n.Output(ctx, "readlink", "/proc/self/ns/net")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		want := fmt.Sprintf("net:[%d]", nsInode(t, n.Path()))
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: child in %s, want %s", r, got, want)
		}
		// /proc/net follows the reader's namespace: the child sees the
		// veths of its namespace, named after the neighbours.
		dev, err := n.Output(ctx, "cat", "/proc/net/dev")
		if err != nil {
			t.Fatalf("%v: %s", err, dev)
		}
		for _, w := range wires {
			peer := ""
			switch r {
			case w.A:
				peer = string(w.B)
			case w.B:
				peer = string(w.A)
			default:
				continue
			}
			if !strings.Contains(string(dev), peer+":") {
				t.Errorf("%s: /proc/net/dev has no %q:\n%s", r, peer, dev)
			}
		}
	}
	assertThreadsHome(t)
	if _, err := os.Stat(l.NS(LAN).Path()); err != nil {
		t.Errorf("namespace path: %v", err)
	}
}

// TestDoLeavesNoThreadBehind runs many Do calls and checks that every
// thread of the process is still in the root namespace afterwards.
func TestDoLeavesNoThreadBehind(t *testing.T) {
	l := newForTest(t, Options{})
	want := nsInode(t, l.NS(Edge).Path())
	for range 50 {
		var inside uint64
		err := l.NS(Edge).Do(func() error {
			var st syscall.Stat_t
			if err := syscall.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()), &st); err != nil {
				return err
			}
			inside = st.Ino
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if inside != want {
			t.Fatalf("Do ran in namespace %d, want %d", inside, want)
		}
	}
	assertThreadsHome(t)
}
