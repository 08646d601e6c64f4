package ratelimit

import (
	"runtime"
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

// The least recently seen name is the one that makes room, and only once
// its bucket is full again; seeing a name again keeps it; refusals for
// want of room are counted.
func TestLimiterEvictsLeastRecent(t *testing.T) {
	l := Limiter{Rate: 10, Burst: 2, MaxNames: 3} // a token takes 100 ms
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l.Allow("a", at(0))
	l.Allow("b", at(10))
	l.Allow("c", at(20))
	if l.Allow("d", at(50)) || l.Crowded() != 1 {
		t.Fatalf("d got room while every bucket was in use (crowded %d)", l.Crowded())
	}
	l.Allow("a", at(95)) // a is seen again: b is now the least recent
	if !l.Allow("d", at(110)) {
		t.Fatal("d refused although b's bucket (least recent) is full again")
	}
	if l.Names() != 3 {
		t.Fatalf("%d names kept, want 3", l.Names())
	}
	// b went, a stayed: a's bucket holds what its two tokens left (one
	// and a half at 150 ms), not a fresh burst of two.
	if !l.Allow("a", at(150)) || l.Allow("a", at(150)) {
		t.Error("a's bucket was reset: a was evicted instead of b")
	}
	if !l.Allow("b", at(300)) {
		t.Error("b, evicted, did not start afresh")
	}
}

// TestLimiterConstantTime: with every bucket in use, refusing a new name
// takes a bounded number of steps: a Limiter of 65536 names refuses 10000
// newcomers within a small multiple of the time one of 1024 takes (the
// scan it replaced was 64 times slower at 65536). Timings are noisy, so
// the bound is loose; BenchmarkLimiterNewName has the figures.
func TestLimiterConstantTime(t *testing.T) {
	run := func(n int) time.Duration {
		l, now := crowdedLimiter(n)
		best := time.Hour
		for range 5 { // the best of five: a GC or a busy machine only slows some
			runtime.GC()
			start := time.Now()
			for i := range 10000 {
				if l.Allow(newcomer(i), now) {
					t.Fatal("a newcomer got room in a crowded limiter")
				}
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	small, large := run(1024), run(65536)
	if large > 8*small+5*time.Millisecond {
		t.Errorf("refusing 10000 newcomers: %v with 65536 names, %v with 1024: grows with the names", large, small)
	}
}

// Peek answers what Allow would, and changes nothing.
func TestLimiterPeek(t *testing.T) {
	l := Limiter{Rate: 10, Burst: 2, MaxNames: 2}
	now := time.Unix(1000, 0)
	if !l.Peek("a", now) || l.Names() != 0 {
		t.Fatal("peek at a new name: refused, or it took a bucket")
	}
	l.Allow("a", now)
	l.Allow("a", now)
	if l.Peek("a", now) {
		t.Error("peek allows a spent bucket")
	}
	if !l.Peek("a", now.Add(100*time.Millisecond)) {
		t.Error("peek refuses a bucket with a token back")
	}
	l.Allow("b", now)
	if l.Peek("c", now) || !l.Peek("c", now.Add(time.Second)) {
		t.Error("peek at a newcomer does not follow the room Allow would find")
	}
	if l.Names() != 2 || l.Crowded() != 0 {
		t.Errorf("peek changed the limiter: %d names, %d crowded", l.Names(), l.Crowded())
	}
}
