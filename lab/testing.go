package lab

import (
	"context"
	"time"

	"github.com/unmap-dev/unmap/test/priv"
)

// TB is what the lab's test helpers use of a test (*testing.T and
// testing.TB have it): an interface of its own, so the unmap binary,
// which runs labs too, does not link the testing package.
type TB interface {
	priv.TB
	Fatal(args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// NewForTest builds a lab for a test: it requires privileges (priv.Require),
// fails the test if the build fails, and tears the lab down in t.Cleanup,
// which runs even when the test fails or panics.
func NewForTest(tb TB, opts Options) *Lab {
	tb.Helper()
	priv.Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
