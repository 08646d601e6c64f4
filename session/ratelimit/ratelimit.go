// Package ratelimit holds the token buckets the agents key by name: by
// site for the ICMP errors they send or relay (as a router rate-limits
// its own), by site and remote for the inbound offers the relay makes.
// The buckets are golang.org/x/time/rate's; this package keeps one per
// name and bounds how many it keeps.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxNames is how many names a Limiter keeps buckets for when
// MaxNames is 0.
const DefaultMaxNames = 4096

// Limiter keeps one token bucket per name: Rate tokens a second, at most
// Burst, full at first. It keeps at most MaxNames buckets: a new name
// finds room by dropping the buckets that have filled up again (their
// names start afresh, as they would have), and when every bucket is
// still in use, the new name is refused: many names spending at once is
// a flood, and refusing its newcomers keeps the names already counted
// limited. The zero value allows nothing; it is safe for concurrent use.
type Limiter struct {
	Rate     float64
	Burst    int
	MaxNames int

	mu sync.Mutex
	by map[string]*rate.Limiter
}

// Allow takes a token from name's bucket at time now, if it has one.
func (l *Limiter) Allow(name string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.by[name]
	if b == nil {
		if !l.room(now) {
			return false
		}
		b = rate.NewLimiter(rate.Limit(l.Rate), l.Burst) // full
		if l.by == nil {
			l.by = map[string]*rate.Limiter{}
		}
		l.by[name] = b
	}
	return b.AllowN(now, 1)
}

// room makes room for one more bucket if it can; l.mu held.
func (l *Limiter) room(now time.Time) bool {
	limit := l.MaxNames
	if limit == 0 {
		limit = DefaultMaxNames
	}
	if len(l.by) < limit {
		return true
	}
	for name, b := range l.by {
		if b.TokensAt(now) >= float64(l.Burst) {
			delete(l.by, name)
		}
	}
	return len(l.by) < limit
}

// Names is how many buckets l keeps.
func (l *Limiter) Names() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.by)
}
