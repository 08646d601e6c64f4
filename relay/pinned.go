package relay

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
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

// pinnedSet is the part that keeps what is left of the pinned flows,
// and takes them over: their entries, and the ports they hold. Its lock
// comes after the flows' (a replay adopts or replaces pinned entries
// while it books the flow) and calls nothing of another part's.
type pinnedSet struct {
	ports *ports.Relay
	m     *metrics.Counters
	log   *slog.Logger
	del   func(xlat.Key) // removes a datapath entry
	// left says flows are left, read without mu: once the replays took
	// them all (or there were none), an open or a bind pays nothing here.
	left atomic.Bool

	mu      sync.Mutex
	byKey   map[xlat.Key]*pinnedFlow // by both their keys
	byLease map[leaseKey]*pinnedFlow // by the port they hold
	until   time.Time                // end of the grace; zero when none are left
}

// count is how many flows are left.
func (s *pinnedSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// take takes stock of the flows in the datapath at start (ms) and
// claims their carriers' ports; entries that make no flow of a site's
// carrier on this relay's addresses and ports are removed. It returns
// how many flows wait for a replay.
func (s *pinnedSet) take(ms []xdp.Mapping, addrs []netip.Addr, sites siteMap, now time.Time) int {
	flows, rest := readPinned(ms, addrs)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range rest {
		s.del(k)
		s.m.Inc(mPinnedUnusable) // half of a pair, or no relay carrier's
	}
	s.byKey, s.byLease = map[xlat.Key]*pinnedFlow{}, map[leaseKey]*pinnedFlow{}
	n := 0
	for _, p := range flows {
		site, ok := sites.siteOf(p.flow.Site)
		if ok && p.carrier.Relay.Port() != 0 {
			k := ports.Key{Relay: p.carrier.Relay.Addr(), Public: p.carrier.Public.Addr(), Proto: p.carrier.Proto}
			lease, err := s.ports.Claim(site, k, p.carrier.Relay.Port())
			ok = err == nil
			p.lease = lease
		}
		if !ok {
			// A site no longer configured, or a port it can no longer
			// hold (another carrier range, a lower quota).
			for _, k := range p.keys() {
				s.del(k)
			}
			s.m.Inc(mPinnedUnowned)
			continue
		}
		p.site = site
		for _, k := range p.keys() {
			s.byKey[k] = p
		}
		if p.lease.Port != 0 {
			s.byLease[leaseKey{p.lease.Key, p.lease.Port}] = p
		}
		s.m.Inc(mPinned)
		n++
	}
	if n > 0 {
		s.until = now.Add(pinnedGrace)
		s.left.Store(true)
	}
	return n
}

// takePinned takes stock of the flows in the datapath at start
// (pinnedSet.take).
func (c *agent) takePinned(ms []xdp.Mapping, addrs []netip.Addr) int {
	return c.pinned.take(ms, addrs, c.sites, c.now())
}

// deleteKey removes one datapath entry.
func (c *agent) deleteKey(k xlat.Key) {
	if c.dp != nil {
		_ = c.dp.XDP.Delete(k)
	}
}

// dropLocked removes a pinned flow, its entries and its port, counted
// under why; s.mu held.
func (s *pinnedSet) dropLocked(p *pinnedFlow, why metrics.Counter) {
	for _, k := range p.keys() {
		s.del(k)
	}
	s.forgetLocked(p)
	if p.lease.Port != 0 {
		if err := s.ports.Release(p.lease); err != nil {
			s.log.Error("port release", "lease", p.lease, "err", err)
		}
	}
	s.m.Inc(why)
}

// forgetLocked takes p out of the set (its entries stay); s.mu held.
func (s *pinnedSet) forgetLocked(p *pinnedFlow) {
	for _, k := range p.keys() {
		if s.byKey[k] == p {
			delete(s.byKey, k)
		}
	}
	lk := leaseKey{p.lease.Key, p.lease.Port}
	if s.byLease[lk] == p {
		delete(s.byLease, lk)
	}
	if len(s.byKey) == 0 {
		s.until = time.Time{}
		s.left.Store(false)
	}
}

// replace removes the pinned flows that hold one of keys, so that new
// entries can take them.
func (s *pinnedSet) replace(keys ...xlat.Key) {
	if !s.left.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if p := s.byKey[k]; p != nil {
			s.dropLocked(p, mPinnedReplaced)
		}
	}
}

// replaceOf removes the pinned flows that hold the keys of k's entries
// about to go in: its way in (out), its way back (back), or both. The
// flows' lock held (k is read).
func (s *pinnedSet) replaceOf(f session.Flow, k *carrier, out, back bool) {
	if !s.left.Load() {
		return
	}
	o, b, err := xdp.RelayPair(f, k.carrier())
	if err != nil {
		return
	}
	if out {
		s.replace(o.Key)
	}
	if back {
		s.replace(b.Key)
	}
}

// adopt takes out of the set the pinned flow whose entries are exactly
// out and back, if one is: they stay as they are. It returns the port
// that flow still held (Port 0: none).
func (s *pinnedSet) adopt(out, back xdp.Mapping) (held ports.Lease, ok bool) {
	if !s.left.Load() {
		return ports.Lease{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byKey[out.Key]
	if p == nil || p != s.byKey[back.Key] || !p.matches(out, back) {
		return ports.Lease{}, false
	}
	s.forgetLocked(p)
	return p.lease, true
}

// lease hands over the port a pinned flow of site holds on lk, if one
// does, for a replay: the pinned flow keeps its entries (the replay
// adopts or replaces them) but no longer its port. Another site's pinned
// port stays with it: the replay's claim is refused, as it would be had
// that site replayed first.
func (s *pinnedSet) lease(site string, lk leaseKey) (ports.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byLease[lk]
	if p == nil || p.site != site {
		return ports.Lease{}, false
	}
	delete(s.byLease, lk)
	lease := p.lease
	p.lease = ports.Lease{}
	return lease, true
}

// carrierOf is the carrier of f's pinned entries if they ride lease's
// carrier (an ICMP echo carrier's entries have no R to compare).
func (s *pinnedSet) carrierOf(f session.Flow, lease ports.Lease) (session.Carrier, bool) {
	s.mu.Lock()
	p := s.byKey[backKey(f)]
	s.mu.Unlock()
	if p == nil || p.flow != f {
		return session.Carrier{}, false
	}
	pc := p.carrier // set at start, never changed
	same := pc.Proto == lease.Proto && pc.Relay.Addr() == lease.Relay && pc.Public.Addr().Unmap() == lease.Public &&
		(pc.Relay.Port() == lease.Port || pc.Proto == session.ICMP)
	return pc, same
}

// backKey is the key of f's remote-to-carrier entry (xdp.RelayPair's
// back), which only f has.
func backKey(f session.Flow) xlat.Key {
	return xlat.Key{Proto: uint8(f.Proto), Src: f.Remote.Addr(), Dst: f.Site.Addr(), SPort: f.Remote.Port(), DPort: f.Site.Port()}
}

// expire removes the pinned flows still waiting for a replay once the
// grace is over.
func (s *pinnedSet) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until.IsZero() || now.Before(s.until) {
		return
	}
	n := 0
	for _, p := range s.byKey {
		if s.byKey[p.out.Key] == p {
			s.dropLocked(p, mPinnedStale)
			n++
		}
	}
	if n > 0 {
		s.log.Info("pinned flows no edge replayed removed", "flows", n, "grace", pinnedGrace)
	}
}

// dropSite removes a site's pinned flows its replay left out: its edge
// no longer has them.
func (s *pinnedSet) dropSite(site string) int {
	if !s.left.Load() {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.byKey {
		if p.site == site && s.byKey[p.out.Key] == p {
			s.dropLocked(p, mPinnedNotReplayed)
			n++
		}
	}
	return n
}
