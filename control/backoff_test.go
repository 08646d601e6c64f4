package control

import (
	"testing"
	"time"
)

func TestBackoffBoundsAndJitter(t *testing.T) {
	b := backoff{min: 250 * time.Millisecond, max: 30 * time.Second}
	seen := map[time.Duration]bool{}
	for n := range 200 {
		d := b.next()
		ceil := min(250*time.Millisecond<<min(n, 20), 30*time.Second)
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, ceil/2, ceil)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct waits in 200: no jitter", len(seen))
	}
	b.reset()
	if d := b.next(); d > 250*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
	huge := backoff{min: time.Hour, max: 2 * time.Hour, n: 1000}
	if d := huge.next(); d < time.Hour || d > 2*time.Hour {
		t.Errorf("large values: %v", d)
	}
}
