package control

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// Counters are named event counts: every refusal, every connection closed
// for a protocol error, every flow result. Names are stable (operators
// graph them) and built from SPEC.md's code names and pki's reasons:
//
//	tls_refused_<pki reason>      a certificate refused in the handshake
//	session_refused_<code>        a Hello refused (unknown-site, prefix-not-granted...)
//	conn_closed_<code>            a connection closed for a protocol error (malformed, too-large...)
//	flow_refused_<code>           a FlowOpen or replay entry refused
//	offer_refused_<code>          an offer the edge refused (or timeout)
//	sessions_started, sessions_ended, flows_opened, flows_closed,
//	offers_sent, offers_accepted, replay_entries, advisory_skipped,
//	late_replies, reconnects, dial_failed
//	send_queue_full, send_stalled, send_failed  a session closed: its edge did not read what it was sent
//	send_dropped_<type>           an advisory message (icmp-error) dropped: the edge's queue was full
//	replay_throttled              a complete replay that waited its turn (one per 5 s per session)
type Counters struct {
	mu sync.RWMutex
	m  map[string]*atomic.Uint64
}

func (c *Counters) add(name string) {
	c.mu.RLock()
	v := c.m[name]
	c.mu.RUnlock()
	if v == nil {
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]*atomic.Uint64{}
		}
		if v = c.m[name]; v == nil {
			v = new(atomic.Uint64)
			c.m[name] = v
		}
		c.mu.Unlock()
	}
	v.Add(1)
}

// Get returns one counter; a counter never incremented is 0.
func (c *Counters) Get(name string) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if v := c.m[name]; v != nil {
		return v.Load()
	}
	return 0
}

// Snapshot copies every counter.
func (c *Counters) Snapshot() map[string]uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]uint64, len(c.m))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

func (c *Counters) code(prefix string, code proto.Code) { c.add(prefix + code.String()) }

func (c *Counters) tls(r pki.Reason) { c.add("tls_refused_" + strings.ReplaceAll(string(r), " ", "-")) }

func (c *Counters) addN(name string, n uint64) {
	if n == 0 {
		return
	}
	c.add(name)
	c.mu.RLock()
	c.m[name].Add(n - 1)
	c.mu.RUnlock()
}

// sumPrefix adds up every counter whose name starts with prefix.
func (c *Counters) sumPrefix(prefix string) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var n uint64
	for k, v := range c.m {
		if strings.HasPrefix(k, prefix) {
			n += v.Load()
		}
	}
	return n
}
