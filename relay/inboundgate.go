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

// siteSharePercent is the share of the relay-wide budget (its rate and its
// burst) the new inbound flows of one site may take. A flood toward one
// site then leaves the other sites at least the other half, at once and
// every second, instead of spending the whole budget and refusing their
// flows for as long as it lasts. Half, not less: one site still has 500
// new inbound flows a second, far above what a site opens in normal use,
// and a busy site is not held to a small slice of a budget it is the only
// one using; a flood must then aim at two sites (of the same relay, known
// to the attacker) to spend the budget, which the relay-wide bound still
// holds. Shares of several sites overlap (they add up to more than the
// budget); the budget is what bounds them together.
const siteSharePercent = 50

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

	// Tests only: other bounds, and another siteSharePercent.
	rate, burst, share int
}

// bounds is the relay-wide budget's rate and burst.
func (g *inboundGate) bounds() (rate, burst int) {
	if g.rate > 0 {
		return g.rate, g.burst
	}
	return inboundRate, inboundBurst
}

// allow takes one new inbound flow from the relay-wide budget at now;
// with take false it only says whether it could.
func (g *inboundGate) allow(now time.Time, take bool) bool {
	rate, burst := g.bounds()
	return gcra(&g.full, now, take, rate, burst)
}

// siteGate is one site's share of the relay-wide budget (siteSharePercent
// of its rate and burst), lock-free like it. The sites' gates are made
// at start with the site map (sites.go) and never change.
type siteGate struct {
	full atomic.Int64 // GCRA: when the site's share is full again (UnixNano)
}

// allow takes one new inbound flow from the site's share of g's budget
// at now; with take false it only says whether it could.
func (s *siteGate) allow(g *inboundGate, now time.Time, take bool) bool {
	rate, burst := g.bounds()
	pct := siteSharePercent
	if g.share > 0 {
		pct = g.share
	}
	share := func(n int) int { return max(1, n*pct/100) }
	return gcra(&s.full, now, take, share(rate), share(burst))
}

// gcra takes (take true) or looks for one token at now of a bucket of
// rate a second and burst at once whose state is full: when the bucket
// is full again, in UnixNano.
func gcra(full *atomic.Int64, now time.Time, take bool, rate, burst int) bool {
	token := int64(time.Second) / int64(rate)
	t := now.UnixNano()
	for {
		f := full.Load()
		next := max(f, t) + token
		if next-t > int64(burst)*token {
			return false
		}
		if !take || full.CompareAndSwap(f, next) {
			return true
		}
	}
}

// admitNew passes, or counts and drops, a packet to a site that has no
// flow for it, before any lock is taken. A packet that may start a flow (a
// TCP SYN; any packet of another protocol) goes on only if an offer of
// it could take a token from its remote's offers to the site
// (inboundlimits.go), from the relay-wide budget and from its site's
// share of it. A TCP segment without SYN never starts a flow and goes
// on: it is part of a flow being set up, or is refused under the lock.
// So is a packet to no site. While a flood has spent the budget (or the
// site's share), the gate also drops the packets of flows already held
// for their offer and of flows refused a moment ago, which would
// otherwise wait for the lock.
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
	if !c.sites.gates[site].allow(&c.inb.gate, now, false) {
		c.m.Inc(mInboundOverSiteShare) // what the budget alone would have let through
		return false
	}
	return true
}
