package ratelimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := Limiter{Rate: 100, Burst: 50}
	now := time.Unix(1000, 0)
	n := 0
	for range 100 {
		if l.Allow("home", now) {
			n++
		}
	}
	if n != 50 {
		t.Errorf("allowed %d at once, want the burst 50", n)
	}
	if !l.Allow("other", now) {
		t.Error("one name's burst limited another")
	}
	if l.Allow("home", now.Add(5*time.Millisecond)) {
		t.Error("a token back after half a period")
	}
	if !l.Allow("home", now.Add(20*time.Millisecond)) {
		t.Error("no token back after two periods")
	}
	var zero Limiter
	if zero.Allow("x", now) {
		t.Error("the zero Limiter allowed")
	}
}

// A Limiter keeps at most MaxNames buckets: a newcomer takes the place
// of a bucket that filled up again, and is refused while all are spent.
func TestLimiterBoundsNames(t *testing.T) {
	l := Limiter{Rate: 10, Burst: 2, MaxNames: 2}
	now := time.Unix(1000, 0)
	for _, name := range []string{"a", "b"} {
		if !l.Allow(name, now) {
			t.Fatalf("%s refused its first token", name)
		}
	}
	if l.Allow("c", now) {
		t.Error("a third name got a bucket while two were in use")
	}
	if !l.Allow("a", now) {
		t.Error("a name already counted lost its bucket to a newcomer")
	}
	later := now.Add(time.Second) // both buckets full again
	if !l.Allow("c", later) {
		t.Error("a newcomer refused although the buckets had filled up again")
	}
	if n := l.Names(); n > 2 {
		t.Errorf("%d buckets kept, want at most 2", n)
	}
}
