package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionOutput checks what `unmap version` prints from the build
// information Go stamps into a binary built in a checkout: the package
// version when one was set, the module version, the full revision with
// its time and whether the tree was modified. The real stamping of a
// built binary is checked by the packaging test.
func TestVersionOutput(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/unmap-dev/unmap", Version: "v0.0.0-20261202210548-874476a1b2c3+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"},
			{Key: "GOARCH", Value: "amd64"},
			{Key: "vcs.revision", Value: "874476a1b2c3d4e5f60718293a4b5c6d7e8f9012"},
			{Key: "vcs.time", Value: "2026-12-02T21:05:48Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		stamped string
		want    []string
	}{
		{"", []string{
			"unmap devel 874476a1b2c3-dirty\n",
			"module   github.com/unmap-dev/unmap v0.0.0-20261202210548-874476a1b2c3+dirty\n",
			"revision 874476a1b2c3d4e5f60718293a4b5c6d7e8f9012 (2026-12-02T21:05:48Z) with uncommitted changes\n",
			"go       go1.26.8 linux/amd64\n",
		}},
		{"0~git20261202210548.874476a1b2c3", []string{
			"unmap 0~git20261202210548.874476a1b2c3\n",
			"revision 874476a1b2c3d4e5f60718293a4b5c6d7e8f9012 ",
		}},
	} {
		var b bytes.Buffer
		writeVersion(&b, tc.stamped, "", info)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("stamped %q: output lacks %q:\n%s", tc.stamped, w, b.String())
			}
		}
	}

	// A binary built without VCS stamping says so instead of printing an
	// empty revision.
	var b bytes.Buffer
	unstamped := &debug.BuildInfo{Main: debug.Module{Path: "github.com/unmap-dev/unmap", Version: "(devel)"}}
	writeVersion(&b, "", "", unstamped)
	if !strings.HasPrefix(b.String(), "unmap (devel)\n") || !strings.Contains(b.String(), "not stamped") {
		t.Errorf("unstamped build:\n%s", b.String())
	}
	// Unless the packaging gave the revision (Go stamps none in a git
	// worktree).
	b.Reset()
	writeVersion(&b, "1.2.3", "874476aea9d53c2dc0d7d1c61d1ff4b2dc53876a", unstamped)
	if !strings.Contains(b.String(), "revision 874476aea9d53c2dc0d7d1c61d1ff4b2dc53876a (given by the packaging") {
		t.Errorf("unstamped build with the packaging's revision:\n%s", b.String())
	}
}
