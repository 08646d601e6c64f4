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
