package lab

import (
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildUnmap builds the unmap binary of the module under test into the
// test's temporary directory and returns its path, for end-to-end tests
// that run the agents as programs inside the lab's namespaces (an agent
// in the test process would open its sockets and attach its XDP programs
// in whatever namespace each goroutine's thread happens to be in).
func BuildUnmap(tb TB) string {
	tb.Helper()
	return BuildBinary(tb, "./cmd/unmap")
}

// BuildBinary builds the main package pkg, a path relative to the module
// root, into the test's temporary directory and returns the binary's
// path. The Go build cache makes every call after the first cheap.
func BuildBinary(tb TB, pkg string) string {
	tb.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}
