package relay

import (
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// sessionBook is the part that knows the edges' control sessions: which
// site is connected on which session, where each comes from (for the
// miss bound's exemption and for holding early packets), and each site's
// flow events for its Pongs. Its lock is a leaf but for exempt, which
// touches the datapath only: a Pong or a session's start never waits for
// the flows' lock.
type sessionBook struct {
	// exempt lets carriers' first packets from a CGNAT address past the
	// datapath's miss bound, or no longer; called under mu, so that a
	// session's start and another's end from the same address cannot
	// swap their calls.
	exempt func(pub netip.Addr, on bool)

	perSite sync.Map // site → *siteTally: flow events by site, for its edge's Pongs (pong.go); no lock

	mu        sync.Mutex
	info      map[string]sessionInfo      // by site, for `unmap status`
	live      map[string]*control.Session // by site
	pickers   map[netip.Addr]int          // sessions that pick R, by the CGNAT address they come from
	edgesFrom map[netip.Addr]int          // sessions by the CGNAT address they come from: exempt from the miss bound
	fromOf    map[uint64]edgeFrom         // and the other way, by session id
}

// edgeFrom is where a session comes from: its CGNAT's public address,
// and whether the edge picks R itself (edge-chooses-r).
type edgeFrom struct {
	addr  netip.Addr
	picks bool
}

func newSessionBook(exempt func(netip.Addr, bool)) *sessionBook {
	return &sessionBook{exempt: exempt, info: map[string]sessionInfo{}, live: map[string]*control.Session{},
		pickers: map[netip.Addr]int{}, edgesFrom: map[netip.Addr]int{}, fromOf: map[uint64]edgeFrom{}}
}

// started books a new session of ss's site, which replaces the site's
// last one.
func (b *sessionBook) started(ss *control.Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.info[ss.Site()] = sessionInfo{ID: ss.ID(), From: ss.RemoteAddr().String(), Since: time.Now()}
	b.live[ss.Site()] = ss
	from := edgeFrom{addr: publicAddr(ss), picks: ss.Grant().Capabilities.Has(proto.CapEdgeChoosesR)}
	b.fromOf[ss.ID()] = from
	if from.picks {
		b.pickers[from.addr]++
	}
	if from.addr.Is4() {
		// Every new flow of the sites behind this address binds its
		// carrier with a first packet from it: the datapath's per-source
		// bound on misses must not hold them back.
		if b.edgesFrom[from.addr]++; b.edgesFrom[from.addr] == 1 {
			b.exempt(from.addr, true)
		}
	}
}

// ended forgets session ss; the site's newer session, if one started
// meanwhile, stays.
func (b *sessionBook) ended(ss *control.Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.info[ss.Site()].ID == ss.ID() {
		delete(b.info, ss.Site())
		delete(b.live, ss.Site())
	}
	from, ok := b.fromOf[ss.ID()]
	if !ok {
		return
	}
	delete(b.fromOf, ss.ID())
	if from.picks {
		if b.pickers[from.addr]--; b.pickers[from.addr] <= 0 {
			delete(b.pickers, from.addr)
		}
	}
	if from.addr.Is4() {
		if b.edgesFrom[from.addr]--; b.edgesFrom[from.addr] <= 0 {
			delete(b.edgesFrom, from.addr)
			b.exempt(from.addr, false)
		}
	}
}

// session is site's live session, nil if its edge is not connected.
func (b *sessionBook) session(site string) *control.Session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.live[site]
}

// picks reports whether a session from CGNAT address pub picks R.
func (b *sessionBook) picks(pub netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pickers[pub] > 0
}

// closers are the live sessions' CloseFlow, by site.
func (b *sessionBook) closers() map[string]func(session.Flow, proto.Code) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]func(session.Flow, proto.Code) error, len(b.live))
	for site, ss := range b.live {
		out[site] = ss.CloseFlow
	}
	return out
}

// connected is how many edges are connected.
func (b *sessionBook) connected() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.live)
}

// sessions is a copy of the sessions as `unmap status` shows them.
func (b *sessionBook) sessions() map[string]sessionInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.info)
}

// count counts a flow event of site with fn, without a lock.
func (b *sessionBook) count(site string, fn func(*siteTally)) { fn(b.tally(site)) }

// counts are site's flow events, without a lock.
func (b *sessionBook) counts(site string) siteCounts {
	t := b.tally(site)
	return siteCounts{opens: t.opens.Load(), closes: t.closes.Load(), refusals: t.refusals.Load()}
}

// tally is site's counts, made on first use.
func (b *sessionBook) tally(site string) *siteTally {
	if t, ok := b.perSite.Load(site); ok {
		return t.(*siteTally)
	}
	t, _ := b.perSite.LoadOrStore(site, &siteTally{})
	return t.(*siteTally)
}
