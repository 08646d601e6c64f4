package relay

import (
	"net/netip"
	"slices"
	"time"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// The relay's XDP maps are pinned (pin_path), so its program goes on
// forwarding every site's flows while the agent restarts. The next agent
// starts with empty books (no carriers, no leased ports) and a datapath
// full of flows: the pinned ones. The edges reconnect and replay their
// flows; a replayed flow whose pinned entries are exactly what the
// replay would install is adopted as it is: nothing is rewritten, so no
// packet of it misses and its counters go on. A pinned flow whose
// entries differ (the CGNAT moved its carrier meanwhile) has them
// replaced. Until a replay takes it, a pinned carrier keeps its port R
// claimed in the allocator, so no new flow is given that port
// (edge-chooses-r included: the edge is refused and lets the relay
// choose). Pinned flows no replay takes are removed: at once when their
// site's replay is done (its edge no longer has them), and after
// pinnedGrace for sites whose edge does not come back in time.

// pinnedGrace is how long after the relay's start its pinned flows wait
// for a replay. An edge redials with a backoff that grows to 30 s
// (control.ClientConfig.MaxBackoff), so an edge whose session broke
// during a long restart redials within 30 s of the relay being back:
// two minutes leave room for a few lost dials. A flow that ended while
// the relay was down forwards nothing meanwhile; an edge that comes back
// later replays its flows all the same and they are mapped anew.
const pinnedGrace = 2 * time.Minute

// pinnedFlow is a flow the last agent left in the pinned datapath that
// no replay has taken yet.
type pinnedFlow struct {
	flow    session.Flow
	carrier session.Carrier // as the entries have it: an ICMP echo carrier has no R (xdp.RelayPair)
	site    string
	lease   ports.Lease // R, claimed at start; Port 0 for an ICMP echo carrier
	out     xdp.Mapping // carrier to remote
	back    xdp.Mapping // remote to carrier
}

// pinnedSet is what is left of the pinned flows; guarded by carriers.mu.
type pinnedSet struct {
	byKey   map[xlat.Key]*pinnedFlow // by both their keys
	byLease map[leaseKey]*pinnedFlow // by the port they hold
	until   time.Time                // end of the grace; zero when none are left
}

// count is how many flows are left.
func (s *pinnedSet) count() int {
	n := 0
	for k, p := range s.byKey {
		if k == p.out.Key {
			n++
		}
	}
	return n
}

func (p *pinnedFlow) keys() []xlat.Key { return []xlat.Key{p.out.Key, p.back.Key} }

// matches reports whether the entries in place are the pair want.
func (p *pinnedFlow) matches(out, back xdp.Mapping) bool {
	return p.out == out && p.back == back
}

// readPinned pairs a datapath's entries into relay flows: an entry whose
// key arrives on one of the relay's addresses is a carrier's way in, and
// xdp.RelayPair says what it and the remote's way back must be. Entries
// that pair with nothing are returned in rest: half a pair (an inbound
// TCP flow whose return entry waits for the remote's first segment, a
// moment's state the replay maps whole), and the carrier slots of
// another carrier address or port range of the same size (the pinned
// layout is the same, and the slots read back as keys of the ports and
// address configured now, which no return entry matches).
func readPinned(ms []xdp.Mapping, addrs []netip.Addr) (flows []*pinnedFlow, rest []xlat.Key) {
	pinned, others := slowpath.ReadPinned(ms, slowpath.RelayPairing, func(m xdp.Mapping) bool { return slices.Contains(addrs, m.Key.Dst) })
	for _, p := range pinned {
		flows = append(flows, &pinnedFlow{flow: p.Flow, carrier: p.Carrier, out: p.Out, back: p.Back})
	}
	for _, m := range others {
		rest = append(rest, m.Key)
	}
	return flows, rest
}

// takePinned takes stock of the flows in the datapath at start (ms) and
// claims their carriers' ports; entries that make no flow of a site's
// carrier on this relay's addresses and ports are removed. It returns
// how many flows wait for a replay.
func (c *carriers) takePinned(ms []xdp.Mapping, addrs []netip.Addr) int {
	flows, rest := readPinned(ms, addrs)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range rest {
		c.deleteKey(k)
		c.m.Inc(mPinnedUnusable) // half of a pair, or no relay carrier's
	}
	c.pinned = pinnedSet{byKey: map[xlat.Key]*pinnedFlow{}, byLease: map[leaseKey]*pinnedFlow{}}
	n := 0
	for _, p := range flows {
		site, ok := c.sites.siteOf(p.flow.Site)
		if ok && p.carrier.Relay.Port() != 0 {
			k := ports.Key{Relay: p.carrier.Relay.Addr(), Public: p.carrier.Public.Addr(), Proto: p.carrier.Proto}
			lease, err := c.ports.Claim(site, k, p.carrier.Relay.Port())
			ok = err == nil
			p.lease = lease
		}
		if !ok {
			// A site no longer configured, or a port it can no longer
			// hold (another carrier range, a lower quota).
			for _, k := range p.keys() {
				c.deleteKey(k)
			}
			c.m.Inc(mPinnedUnowned)
			continue
		}
		p.site = site
		for _, k := range p.keys() {
			c.pinned.byKey[k] = p
		}
		if p.lease.Port != 0 {
			c.pinned.byLease[leaseKey{p.lease.Key, p.lease.Port}] = p
		}
		c.m.Inc(mPinned)
		n++
	}
	if n > 0 {
		c.pinned.until = c.now().Add(pinnedGrace)
	}
	return n
}

// deleteKey removes one pinned entry; c.mu held.
func (c *carriers) deleteKey(k xlat.Key) {
	if c.dp != nil {
		_ = c.dp.XDP.Delete(k)
	}
}

// dropPinnedLocked removes a pinned flow, its entries and its port,
// counted under why; c.mu held.
func (c *carriers) dropPinnedLocked(p *pinnedFlow, why metrics.Counter) {
	for _, k := range p.keys() {
		c.deleteKey(k)
	}
	c.forgetPinnedLocked(p)
	if p.lease.Port != 0 {
		if err := c.ports.Release(p.lease); err != nil {
			c.log.Error("port release", "lease", p.lease, "err", err)
		}
	}
	c.m.Inc(why)
}

// forgetPinnedLocked takes p out of the set (its entries stay); c.mu held.
func (c *carriers) forgetPinnedLocked(p *pinnedFlow) {
	for _, k := range p.keys() {
		if c.pinned.byKey[k] == p {
			delete(c.pinned.byKey, k)
		}
	}
	lk := leaseKey{p.lease.Key, p.lease.Port}
	if c.pinned.byLease[lk] == p {
		delete(c.pinned.byLease, lk)
	}
	if len(c.pinned.byKey) == 0 {
		c.pinned.until = time.Time{}
	}
}

// replacePinnedLocked removes the pinned flows that hold one of keys, so
// that new entries can take them; c.mu held.
func (c *carriers) replacePinnedLocked(keys ...xlat.Key) {
	for _, k := range keys {
		if p := c.pinned.byKey[k]; p != nil {
			c.dropPinnedLocked(p, mPinnedReplaced)
		}
	}
}

// replacePinnedOfLocked removes the pinned flows that hold the keys of
// k's entries about to go in: its way in (out), its way back (back), or
// both; c.mu held.
func (c *carriers) replacePinnedOfLocked(f session.Flow, k *carrier, out, back bool) {
	if len(c.pinned.byKey) == 0 {
		return
	}
	o, b, err := xdp.RelayPair(f, k.carrier())
	if err != nil {
		return
	}
	if out {
		c.replacePinnedLocked(o.Key)
	}
	if back {
		c.replacePinnedLocked(b.Key)
	}
}

// pinnedLeaseLocked hands over the port a pinned flow of site holds on
// lk, if one does, for a replay: the pinned flow keeps its entries (the
// replay adopts or replaces them) but no longer its port. Another site's
// pinned port stays with it: the replay's claim is refused, as it would
// be had that site replayed first. c.mu held.
func (c *carriers) pinnedLeaseLocked(site string, lk leaseKey) (ports.Lease, bool) {
	p := c.pinned.byLease[lk]
	if p == nil || p.site != site {
		return ports.Lease{}, false
	}
	delete(c.pinned.byLease, lk)
	lease := p.lease
	p.lease = ports.Lease{}
	return lease, true
}

// pinnedCarrierLocked is the carrier of f's pinned entries if they ride
// lease's carrier (an ICMP echo carrier's entries have no R to compare);
// c.mu held.
func (c *carriers) pinnedCarrierLocked(f session.Flow, lease ports.Lease) (session.Carrier, bool) {
	p := c.pinned.byKey[backKey(f)]
	if p == nil || p.flow != f {
		return session.Carrier{}, false
	}
	pc := p.carrier
	same := pc.Proto == lease.Proto && pc.Relay.Addr() == lease.Relay && pc.Public.Addr().Unmap() == lease.Public &&
		(pc.Relay.Port() == lease.Port || pc.Proto == session.ICMP)
	return pc, same
}

// backKey is the key of f's remote-to-carrier entry (xdp.RelayPair's
// back), which only f has.
func backKey(f session.Flow) xlat.Key {
	return xlat.Key{Proto: uint8(f.Proto), Src: f.Remote.Addr(), Dst: f.Site.Addr(), SPort: f.Remote.Port(), DPort: f.Site.Port()}
}

// expirePinnedLocked removes the pinned flows still waiting for a replay
// once the grace is over; c.mu held.
func (c *carriers) expirePinnedLocked(now time.Time) {
	if c.pinned.until.IsZero() || now.Before(c.pinned.until) {
		return
	}
	n := 0
	for _, p := range c.pinned.byKey {
		if c.pinned.byKey[p.out.Key] == p {
			c.dropPinnedLocked(p, mPinnedStale)
			n++
		}
	}
	if n > 0 {
		c.log.Info("pinned flows no edge replayed removed", "flows", n, "grace", pinnedGrace)
	}
}

// dropSitePinnedLocked removes a site's pinned flows its replay left out:
// its edge no longer has them. c.mu held.
func (c *carriers) dropSitePinnedLocked(site string) int {
	n := 0
	for _, p := range c.pinned.byKey {
		if p.site == site && c.pinned.byKey[p.out.Key] == p {
			c.dropPinnedLocked(p, mPinnedNotReplayed)
			n++
		}
	}
	return n
}
