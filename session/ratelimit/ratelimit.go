// Package ratelimit holds the token buckets the agents put in front of
// the ICMP errors they send or relay, as a router rate-limits its own.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter keeps one token bucket per name: Rate tokens a second, at most
// Burst, full at first. The zero value allows nothing; it is safe for
// concurrent use.
type Limiter struct {
	Rate, Burst float64

	mu sync.Mutex
	by map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Allow takes a token from name's bucket at time now, if it has one.
func (l *Limiter) Allow(name string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[string]*bucket{}
	}
	b := l.by[name]
	if b == nil {
		b = &bucket{tokens: l.Burst, last: now}
		l.by[name] = b
	}
	b.tokens = min(l.Burst, b.tokens+now.Sub(b.last).Seconds()*l.Rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
