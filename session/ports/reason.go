package ports

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Reason names why a grant or release was refused. Values are stable:
// operators graph them.
type Reason string

const (
	ReasonExhausted   Reason = "exhausted"    // every port of the range is in use
	ReasonQuarantined Reason = "quarantined"  // free ports exist, but all were released too recently
	ReasonSiteQuota   Reason = "site-quota"   // the site holds as many ports as its quota allows
	ReasonUnknownSite Reason = "unknown-site" // the relay has no quota for this site
	ReasonNotGranted  Reason = "not-granted"  // release of a port that is not in use (double release)
	ReasonInUse       Reason = "in-use"       // claim of a port that is already in use
	ReasonOutOfRange  Reason = "out-of-range" // the port is not in the configured range
	// ReasonInboundShare: inbound flows hold their share of the ports
	// (of the range, a relay pool or the site's quota); the rest is kept
	// for outbound flows (inbound.go).
	ReasonInboundShare Reason = "inbound-share"
)

// Error is a refusal; errors.Is matches it against another *Error with
// the same Reason, such as ErrExhausted.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "ports: " + string(e.Reason)
	}
	return fmt.Sprintf("ports: %s: %s", e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrExhausted) work whatever the detail.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Reason == e.Reason
}

// Sentinels for errors.Is.
var (
	ErrExhausted    = &Error{Reason: ReasonExhausted}
	ErrQuarantined  = &Error{Reason: ReasonQuarantined}
	ErrSiteQuota    = &Error{Reason: ReasonSiteQuota}
	ErrUnknownSite  = &Error{Reason: ReasonUnknownSite}
	ErrNotGranted   = &Error{Reason: ReasonNotGranted}
	ErrInUse        = &Error{Reason: ReasonInUse}
	ErrOutOfRange   = &Error{Reason: ReasonOutOfRange}
	ErrInboundShare = &Error{Reason: ReasonInboundShare}
)

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Counters count refusals by reason; safe for concurrent use.
type Counters struct {
	mu sync.Mutex
	n  map[Reason]uint64
}

func (c *Counters) add(r Reason) {
	c.mu.Lock()
	if c.n == nil {
		c.n = make(map[Reason]uint64)
	}
	c.n[r]++
	c.mu.Unlock()
}

// count records err's reason when it is a refusal, and returns err.
func (c *Counters) count(err error) error {
	var e *Error
	if errors.As(err, &e) {
		c.add(e.Reason)
	}
	return err
}

// Get is the count for r.
func (c *Counters) Get(r Reason) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[r]
}

// Snapshot copies every non-zero count.
func (c *Counters) Snapshot() map[Reason]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Reason]uint64, len(c.n))
	for r, v := range c.n {
		out[r] = v
	}
	return out
}

// String lists the counts in a stable order, for logs.
func (c *Counters) String() string {
	s := c.Snapshot()
	keys := make([]string, 0, len(s))
	for r := range s {
		keys = append(keys, string(r))
	}
	sort.Strings(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%s=%d", k, s[Reason(k)])
	}
	return out
}

// Reasons are every Reason, the closed set a refusal is counted under.
var Reasons = []Reason{ReasonExhausted, ReasonQuarantined, ReasonSiteQuota, ReasonUnknownSite, ReasonNotGranted, ReasonInUse, ReasonOutOfRange, ReasonInboundShare}
