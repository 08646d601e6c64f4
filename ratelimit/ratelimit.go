// Package ratelimit holds the token buckets the agents key by name: by
// site for the ICMP errors they send or relay (as a router rate-limits
// its own), by site and remote for the inbound offers the relay makes.
// Each bucket is one time (GCRA: the time it is full again); this package
// keeps one per name and bounds how many it keeps, in constant time per
// call.
package ratelimit

import (
	"sync"
	"time"
)

// DefaultMaxNames is how many names a Limiter keeps buckets for when
// MaxNames is 0.
const DefaultMaxNames = 4096

// Limiter keeps one token bucket per name: Rate tokens a second, at most
// Burst, full at first. It keeps at most MaxNames buckets, in the order
// their names were last seen. A new name finds room by taking the place
// of the least recently seen name if that one's bucket has filled up
// again (the name would start afresh anyway); if it has not, every
// bucket is in use, and the new name is refused (counted, Crowded): many
// names spending at once is a flood, and refusing its newcomers keeps
// the names already counted limited. Each call costs the same whatever
// the number of names. A Limiter without a Rate or a Burst allows
// nothing (so does the zero value); it is safe for concurrent use.
type Limiter struct {
	Rate     float64
	Burst    int
	MaxNames int

	mu      sync.Mutex
	by      map[string]*entry
	head    entry // sentinel of the recency list: head.next is the most recent
	crowded uint64
}

// entry is one name's bucket, in the recency list. full is when the
// bucket is full again: each token taken moves it one token's time on,
// and a token may be taken while that leaves it at most Burst tokens'
// time ahead of now.
type entry struct {
	name       string
	full       int64 // UnixNano
	prev, next *entry
}

// Allow takes a token from name's bucket at time now, if it has one.
func (l *Limiter) Allow(name string, now time.Time) bool {
	if l.Rate <= 0 || l.Burst <= 0 {
		return false
	}
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[string]*entry{}
		l.head.prev, l.head.next = &l.head, &l.head
	}
	e := l.by[name]
	if e == nil {
		if e = l.room(t); e == nil {
			l.crowded++
			return false
		}
		e.name, e.full = name, t // full
		l.by[name] = e
	} else {
		e.unlink()
	}
	e.linkAfter(&l.head)
	token := int64(float64(time.Second) / l.Rate)
	next := max(e.full, t) + token
	if next-t > int64(l.Burst)*token {
		return false
	}
	e.full = next
	return true
}

// Peek says whether Allow(name, now) would take a token, without taking
// it or changing the names kept: a caller can refuse early, before
// locks of its own, and take the token once it knows it needs it.
func (l *Limiter) Peek(name string, now time.Time) bool {
	if l.Rate <= 0 || l.Burst <= 0 {
		return false
	}
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.by[name]
	if e == nil {
		limit := l.MaxNames
		if limit == 0 {
			limit = DefaultMaxNames
		}
		return len(l.by) < limit || l.head.prev.full <= t
	}
	token := int64(float64(time.Second) / l.Rate)
	return max(e.full, t)+token-t <= int64(l.Burst)*token
}

// room returns an entry for a new name, unlinked: a fresh one while
// fewer than MaxNames are kept, else the least recently seen one if its
// bucket is full again, else nil; l.mu held.
func (l *Limiter) room(now int64) *entry {
	limit := l.MaxNames
	if limit == 0 {
		limit = DefaultMaxNames
	}
	if len(l.by) < limit {
		return &entry{}
	}
	old := l.head.prev
	if old == &l.head || old.full > now {
		return nil
	}
	old.unlink()
	delete(l.by, old.name)
	return old
}

func (e *entry) unlink() {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (e *entry) linkAfter(at *entry) {
	e.prev, e.next = at, at.next
	at.next.prev = e
	at.next = e
}

// Names is how many buckets l keeps.
func (l *Limiter) Names() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.by)
}

// Crowded is how many new names were refused because every bucket was
// in use.
func (l *Limiter) Crowded() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.crowded
}
