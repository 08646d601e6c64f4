package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestDownSelects checks what Down removes: everything but labs in use,
// and those too with all; given prefixes, only labs among them.
func TestDownSelects(t *testing.T) {
	for _, tc := range []struct {
		o         Ownership
		want, all bool
	}{
		{Unowned, true, true},
		{Kept, true, true},
		{InUse, false, true},
		{Orphaned, true, true},
	} {
		lo := Leftover{Ownership: tc.o}
		if got := downSelects(false, nil)(lo); got != tc.want {
			t.Errorf("%v: Down removes it: %v, want %v", tc.o, got, tc.want)
		}
		if got := downSelects(true, nil)(lo); got != tc.all {
			t.Errorf("%v: Down(all) removes it: %v, want %v", tc.o, got, tc.all)
		}
		lo.Prefix = "unmap-00000a"
		if got := downSelects(true, []string{"unmap-00000b"})(lo); got {
			t.Errorf("%v: Down(all, another prefix) removes it", tc.o)
		}
		if got := downSelects(false, []string{"unmap-00000b", lo.Prefix})(lo); got != tc.want {
			t.Errorf("%v: Down(its prefix) removes it: %v, want %v", tc.o, got, tc.want)
		}
	}
}

// deadPid returns the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestOwnership reads the owner file of labs in each state, and removes
// a released lab the way Down does, without touching labs of others.
func TestOwnership(t *testing.T) {
	inUse := newForTest(t, Options{})
	kept := newForTest(t, Options{})
	if err := kept.Release(); err != nil {
		t.Fatal(err)
	}
	orphan := newForTest(t, Options{})
	// Other test binaries build labs (and so reap orphans) and run
	// `unmap lab down` at the same time: hold their lock while this lab
	// is an orphan and the ownership is read.
	unlock, err := lockLabs()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(OwnerDir, orphan.Prefix), []byte(strconv.Itoa(deadPid(t))), 0o644); err != nil {
		unlock()
		t.Fatal(err)
	}
	los, err := Leftovers()
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]Leftover{}
	for _, lo := range los {
		state[lo.Prefix] = lo
	}
	for _, tc := range []struct {
		l    *Lab
		want Ownership
	}{{inUse, InUse}, {kept, Kept}, {orphan, Orphaned}} {
		lo, ok := state[tc.l.Prefix]
		if !ok {
			t.Fatalf("Leftovers misses %s", tc.l.Prefix)
		}
		if lo.Ownership != tc.want || len(lo.Namespaces) != len(Roles) {
			t.Errorf("%s: %v with %d namespaces, want %v with %d", tc.l.Prefix, lo.Ownership, len(lo.Namespaces), tc.want, len(Roles))
		}
	}
	if state[inUse.Prefix].Owner != os.Getpid() {
		t.Errorf("owner %d, want this process %d", state[inUse.Prefix].Owner, os.Getpid())
	}

	// An owner file of a dead process with no namespaces: a run that died
	// between claiming its prefix and building.
	stale := filepath.Join(OwnerDir, NamePrefix+"stale0")
	if err := os.WriteFile(stale, []byte(strconv.Itoa(deadPid(t))), 0o644); err != nil {
		t.Fatal(err)
	}

	// Building a lab reaps the orphans, and only them.
	newForTest(t, Options{})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale owner file not reaped: %v", err)
	}
	if got := labNamespaces(t, orphan.Prefix+"-"); len(got) != 0 {
		t.Errorf("orphaned lab not reaped: %v", got)
	}
	for _, l := range []*Lab{inUse, kept} {
		if got := labNamespaces(t, l.Prefix+"-"); len(got) != len(Roles) {
			t.Errorf("lab %s lost namespaces to the reaper: %v", l.Prefix, got)
		}
	}

	// Removing the kept lab as Down would (only this one: a developer's
	// own kept lab on this machine is not the test's to remove).
	removed, _, err := remove(func(lo Leftover) bool { return lo.Prefix == kept.Prefix })
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range kept.Namespaces() {
		if !slices.Contains(removed, n.Name) {
			t.Errorf("not removed: %s (removed %v)", n.Name, removed)
		}
	}
	if got := labNamespaces(t, kept.Prefix+"-"); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	if _, err := os.Stat(filepath.Join(OwnerDir, kept.Prefix)); !os.IsNotExist(err) {
		t.Errorf("owner file of a removed lab: %v", err)
	}
	// t.Cleanup closes all four labs: closing a removed one must not fail.
}
