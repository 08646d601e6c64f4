// Package bpffs gives a test a bpf filesystem of its own, for pinning.
// bpffs mounts are separate instances, so tests that pin never share or
// leave pins: each mount is dropped, with what was pinned in it, when
// the test ends, even when it fails.
package bpffs

import (
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/test/priv"
)

// TB is what ForTest uses of a test (*testing.T has it).
type TB interface {
	priv.TB
	TempDir() string
	Cleanup(func())
	Errorf(format string, args ...any)
}

// ForTest mounts a bpf filesystem in a temporary directory of tb and
// returns its path; tb's cleanup unmounts it. It needs root
// (priv.Require).
func ForTest(tb TB) string {
	tb.Helper()
	priv.Require(tb)
	dir := tb.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		tb.Fatalf("mount bpffs: %v", err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount bpffs: %v", err)
		}
	})
	return dir
}
