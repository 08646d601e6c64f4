package priv

import (
	"fmt"
	"strings"
	"testing"
)

// fakeTB records what Tool asked of the test instead of ending it.
type fakeTB struct{ fatal, skip string }

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.fatal = fmt.Sprintf(format, a...) }
func (f *fakeTB) Skip(a ...any)                  { f.skip = fmt.Sprint(a...) }
func (f *fakeTB) Skipf(format string, a ...any)  { f.skip = fmt.Sprintf(format, a...) }

// TestTool: a program on PATH is returned; a missing one skips naming the
// Debian package to install, and fails instead under UNMAP_REQUIRE_PRIV=1.
func TestTool(t *testing.T) {
	t.Setenv(EnvRequire, "")
	var tb fakeTB
	if p := Tool(&tb, "go", "golang-go"); p == "" || tb.skip != "" || tb.fatal != "" {
		t.Errorf("go: path %q, skip %q, fatal %q", p, tb.skip, tb.fatal)
	}
	const missing = "unmap-no-such-program"
	tb = fakeTB{}
	Tool(&tb, missing, "some-package")
	if !strings.Contains(tb.skip, "apt-get install some-package") || tb.fatal != "" {
		t.Errorf("missing, not required: skip %q, fatal %q", tb.skip, tb.fatal)
	}
	t.Setenv(EnvRequire, "1")
	tb = fakeTB{}
	Tool(&tb, missing, "some-package")
	if !strings.Contains(tb.fatal, "apt-get install some-package") {
		t.Errorf("missing, required: fatal %q (skip %q)", tb.fatal, tb.skip)
	}
}
