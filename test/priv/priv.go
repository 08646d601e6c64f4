// Package priv decides, in one place, whether a test that needs root
// (BPF, network namespaces, nftables) or a third-party program can run.
//
// On a developer machine without privileges such tests skip. With
// UNMAP_REQUIRE_PRIV=1 (set by .ci/run, which runs as root) they fail
// instead, so a CI run can never pass by skipping them.
package priv

import (
	"os"
	"os/exec"
)

// TB is what Require and Unsupported use of a test: *testing.T,
// *testing.B and testing.TB have it. An interface of its own keeps this
// package, and test/labtest that uses it with the lab's TB, from
// needing the testing package.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
}

// EnvRequire is the variable that turns skips into failures.
const EnvRequire = "UNMAP_REQUIRE_PRIV"

// Required reports whether privileged tests must run.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Require skips t unless the process runs as root; when Required, a
// non-root process fails t instead.
func Require(tb TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Required() {
		tb.Fatalf("test needs root and %s=1 forbids skipping it", EnvRequire)
	}
	tb.Skip("test needs root (run with sudo, or set " + EnvRequire + "=1 to make this a failure)")
}

// Unsupported handles an error that says the kernel lacks a feature
// (for example ebpf.ErrNotSupported): skip normally, fail when Required.
func Unsupported(tb TB, err error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("kernel feature missing and %s=1 forbids skipping: %v", EnvRequire, err)
	}
	tb.Skipf("kernel feature missing: %v", err)
}

// Tool returns the path of a third-party program that a test drives on
// purpose (a real client such as traceroute6), found on PATH. Everything
// else in the tests needs only Go; these few say which Debian package
// brings the program, and skip without it, or fail when Required: CI
// installs them, so a CI run cannot pass by skipping them.
func Tool(tb TB, name, debian string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if Required() {
		tb.Fatalf("test drives %s (apt-get install %s) and %s=1 forbids skipping it: %v", name, debian, EnvRequire, err)
	}
	tb.Skipf("test drives %s, not installed: apt-get install %s", name, debian)
	return ""
}
