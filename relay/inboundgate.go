package relay

import (
	"sync/atomic"
	"time"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/handshake"
)

// What the relay's inbound slow path as a whole takes on: new flows from
// the Internet to any site, inboundRate a second after a burst of
// inboundBurst. A flood from many sources (spoofed ones cost nothing)
// passes each source's own bounds, the datapath's and the offer limit's,
// because every source is new to them; this bound is what keeps the slow
// path, the inbound offers' lock and the sites' control channels serving the
// sites' own new flows (carriers from their CGNAT addresses, which never
// meet it) while such a flood lasts. It is well above what the relay's
// sites open inbound in normal use, and well below what one core of the
// slow path can offer to edges.
const (
	inboundRate  = 1000
	inboundBurst = 1000
)

// inboundGate is the relay-wide budget, and the inbound slow path's
// first gate, passed before any lock (inboundOffers.mu): a packet
// over a bound is counted and dropped without taking the lock, so a
// flood costs the lock nothing. Tokens are taken under inboundOffers.mu, by the
// offers themselves (inbound.go), so that what the gate lets through
// but is no offer (a packet of a flow held for its offer, one of a flow
// the edge refused a moment ago) costs nothing. Its zero value is ready,
// with the bounds above.
type inboundGate struct {
	full atomic.Int64 // GCRA: when the relay-wide budget is full again (UnixNano)

	// Tests only: other bounds.
	rate, burst int
}

// allow takes one new inbound flow from the relay-wide budget at now;
// with take false it only says whether it could.
func (g *inboundGate) allow(now time.Time, take bool) bool {
	rate, burst := inboundRate, inboundBurst
	if g.rate > 0 {
		rate, burst = g.rate, g.burst
	}
	token := int64(time.Second) / int64(rate)
	t := now.UnixNano()
	for {
		full := g.full.Load()
		next := max(full, t) + token
		if next-t > int64(burst)*token {
			return false
		}
		if !take || g.full.CompareAndSwap(full, next) {
			return true
		}
	}
}

// admitNew passes, or counts and drops, a packet to a site that has no
// flow for it, before any lock is taken. A packet that may start a flow (a
// TCP SYN; any packet of another protocol) goes on only if an offer of
// it could take a token from its remote's offers to the site
// (inboundlimits.go) and from the relay-wide budget. A TCP segment
// without SYN never starts a flow and goes on: it is part of a flow
// being set up, or is refused under the lock. So is a packet to no site.
// While a flood has spent the budget, the gate also drops the packets of
// flows already held for their offer and of flows refused a moment ago,
// which would otherwise wait for the lock.
func (c *agent) admitNew(f session.Flow, syn *handshake.Segment) bool {
	if syn != nil && !syn.Is(handshake.SYN) {
		return true
	}
	site, ok := c.sites.siteOf(f.Site)
	if !ok {
		return true
	}
	now := c.now()
	if !c.inb.peekOffer(site, f.Remote.Addr(), now) {
		c.m.Inc(mInboundOfferRate)
		return false
	}
	if !c.inb.gate.allow(now, false) {
		c.m.Inc(mInboundOverBudget)
		return false
	}
	return true
}
