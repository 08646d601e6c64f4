package lab

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/test/priv"
)

// mounted reports whether dir is a mount point (/proc/self/mountinfo).
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// TestReapPins: a bpf filesystem MountPins mounted is left alone while
// its process lives, and unmounted by the reaper (and Down) once the
// record says its process died, as when a test binary is killed.
func TestReapPins(t *testing.T) {
	priv.Require(t)
	dir := filepath.Join(t.TempDir(), "bpffs")
	if err := MountPins(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountPins(dir) })
	if !mounted(t, dir) {
		t.Fatal("MountPins mounted nothing")
	}
	if got, err := reapPins(false); err != nil || slices.Contains(got, dir) || !mounted(t, dir) {
		t.Fatalf("the mount of a live process reaped: %v, %v", got, err)
	}
	rec := pinsRecord(dir)
	if err := os.WriteFile(rec, []byte(strconv.Itoa(deadPid(t))+"\n"+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	removed, _, err := Down(false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, "bpffs "+dir) || mounted(t, dir) {
		t.Errorf("Down after its process died: removed %v, still mounted %v", removed, mounted(t, dir))
	}
	if _, err := os.Stat(rec); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record left behind: %v", err)
	}
}
