package lab

import (
	"context"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/test/priv"
)

// NewForTest builds a lab for a test: it requires privileges (priv.Require),
// fails the test if the build fails, and tears the lab down in t.Cleanup,
// which runs even when the test fails or panics.
func NewForTest(tb testing.TB, opts Options) *Lab {
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
