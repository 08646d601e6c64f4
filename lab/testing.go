package lab

import (
	"context"
	"time"
)

// TB is what the lab's test helpers use of a test (*testing.T and
// testing.TB have it): an interface of its own, so the unmap binary,
// which runs labs too, does not link the testing package.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// NewForTest builds a lab for a test, fails the test if the build fails,
// and tears the lab down in t.Cleanup, which runs even when the test
// fails or panics. It does not check privileges: tests call it through
// test/labtest.New, which does (with test/priv, a test helper the lab,
// part of the binary, must not link).
func NewForTest(tb TB, opts Options) *Lab {
	tb.Helper()
	// A build takes a few seconds; the bound is for a hang, not a slow
	// machine: 30 s ran out once with several test binaries building
	// labs on two loaded cores.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l, err := New(ctx, opts)
	if err != nil {
		tb.Fatalf("lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("lab teardown: %v", err)
		}
	})
	return l
}
