package ports

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// RelayConfig configures a Relay; the zero value of an optional field
// means its default.
type RelayConfig struct {
	Addrs      []netip.Addr     // relay IPv4 addresses carriers use, tried in order
	Ports      Range            // carrier ports R on each address
	Quarantine time.Duration    // rest before a released port is reused; 0 means DefaultQuarantine, negative none
	Now        func() time.Time // clock; nil means time.Now
	// InboundShare is the percentage of a pool's ports, and of a site's
	// quota, that inbound grants (GrantInbound) may hold; 0 means
	// DefaultInboundShare, 100 keeps nothing for outbound flows.
	InboundShare int
}

// Key is what a relay port is unique within: a carrier is told apart,
// before its CGNAT port C is known, by (public addr, R) on a relay
// address and protocol.
type Key struct {
	Relay  netip.Addr
	Public netip.Addr
	Proto  session.Proto
}

// Lease is one granted port. Keep it with the carrier and hand it back
// to Release.
type Lease struct {
	Key
	Port    uint16
	site    *site
	inbound bool // granted by GrantInbound: counted in its share until released
}

// RelayAddr is the relay end of the carrier, addr:R.
func (l Lease) RelayAddr() netip.AddrPort { return netip.AddrPortFrom(l.Relay, l.Port) }

// Site is the id of the site holding l.
func (l Lease) Site() string {
	if l.site == nil {
		return ""
	}
	return l.site.id
}

type site struct {
	id          string
	quota, held int
	inbound     int // ports held by inbound grants
}

// Relay allocates carrier ports R. It is safe for concurrent use.
type Relay struct {
	mu       sync.Mutex
	cfg      RelayConfig
	t        ticker
	pools    map[Key]*Pool
	idle     map[Key]struct{} // pools with no port in use, for Trim
	sites    map[string]*site
	inUse    int
	inbound  map[Key]int // ports held by inbound grants, by pool
	ops      uint32      // grants since the last automatic trim
	granted  uint64
	released uint64

	// Refused counts refusals of Grant, Claim and Release by reason.
	Refused Counters
}

// NewRelay checks c and makes an allocator with no sites.
func NewRelay(c RelayConfig) (*Relay, error) {
	if len(c.Addrs) == 0 {
		return nil, errors.New("ports: relay needs at least one address")
	}
	for _, a := range c.Addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("ports: relay address %v is not IPv4", a)
		}
	}
	if err := c.Ports.Check(); err != nil {
		return nil, err
	}
	return &Relay{
		cfg:     c,
		t:       newTicker(c.Now, c.Quarantine),
		pools:   make(map[Key]*Pool),
		idle:    make(map[Key]struct{}),
		sites:   make(map[string]*site),
		inbound: make(map[Key]int),
	}, nil
}

// SetSite sets the quota of site: how many ports it may hold at once,
// over all its carriers. Lowering it below what the site holds refuses
// new grants until enough are released.
func (r *Relay) SetSite(id string, quota int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sites[id]; s != nil {
		s.quota = quota
		return
	}
	r.sites[id] = &site{id: id, quota: quota}
}

// Grant hands site a port for a carrier from public (the CGNAT address
// its edge appears from) of proto, on the first relay address with one
// free.
func (r *Relay) Grant(siteID string, public netip.Addr, proto session.Proto) (Lease, error) {
	return r.grant(siteID, public, proto, false)
}

// GrantInbound is Grant for an inbound flow: it is refused with
// ReasonInboundShare once inbound grants hold their share of the site's
// quota, or of the pool it would come from (inbound.go).
func (r *Relay) GrantInbound(siteID string, public netip.Addr, proto session.Proto) (Lease, error) {
	return r.grant(siteID, public, proto, true)
}

func (r *Relay) grant(siteID string, public netip.Addr, proto session.Proto, inbound bool) (Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.site(siteID)
	if err != nil {
		return Lease{}, r.Refused.count(err)
	}
	if inbound && s.inbound >= inboundCap(s.quota, r.cfg.InboundShare) {
		return Lease{}, r.Refused.count(refuse(ReasonInboundShare, "site %q: inbound flows hold %d of its %d ports", siteID, s.inbound, s.quota))
	}
	now := r.t.tick()
	if r.ops++; r.ops == autoTrimEvery {
		r.ops = 0
		r.trim(now, autoTrimMax)
	}
	var last error
	for _, a := range r.cfg.Addrs {
		k := Key{a, public.Unmap(), proto}
		if inbound && r.inbound[k] >= inboundCap(r.cfg.Ports.Len(), r.cfg.InboundShare) {
			if last == nil {
				last = refuse(ReasonInboundShare, "inbound flows hold %d ports of %v on %v", r.inbound[k], r.cfg.Ports, k)
			}
			continue
		}
		port, err := r.pool(k).Take(now, r.t.q)
		if err != nil {
			// Quarantined says more than exhausted: keep it if any said it.
			if last == nil || !errors.Is(last, ErrQuarantined) && !errors.Is(last, ErrInboundShare) {
				last = err
			}
			r.maybeIdle(k)
			continue
		}
		s.held++
		r.inUse++
		r.granted++
		if inbound {
			s.inbound++
			r.inbound[k]++
		}
		return Lease{Key: k, Port: port, site: s, inbound: inbound}, nil
	}
	return Lease{}, r.Refused.count(last)
}

// Claim gives site a port that it already uses, after a relay restart
// (the edge replays its flows, carriers included).
func (r *Relay) Claim(siteID string, k Key, port uint16) (Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.site(siteID)
	if err != nil {
		return Lease{}, r.Refused.count(err)
	}
	if !r.ownAddr(k.Relay) {
		return Lease{}, r.Refused.count(refuse(ReasonOutOfRange, "%v is not a relay address", k.Relay))
	}
	k.Public = k.Public.Unmap()
	if err := r.pool(k).Claim(port); err != nil {
		r.maybeIdle(k)
		return Lease{}, r.Refused.count(err)
	}
	s.held++
	r.inUse++
	return Lease{Key: k, Port: port, site: s}, nil
}

// Release returns l's port; it rests for the quarantine before reuse.
func (r *Relay) Release(l Lease) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pools[l.Key]
	if p == nil || l.site == nil {
		return r.Refused.count(refuse(ReasonNotGranted, "no port %d granted for %v", l.Port, l.Key))
	}
	if err := p.Put(l.Port, r.t.tick()); err != nil {
		return r.Refused.count(err)
	}
	l.site.held--
	r.inUse--
	if l.inbound {
		l.site.inbound--
		if r.inbound[l.Key]--; r.inbound[l.Key] <= 0 {
			delete(r.inbound, l.Key)
		}
	}
	r.released++
	r.maybeIdle(l.Key)
	return nil
}

// Automatic trimming: every autoTrimEvery grants, Grant drops up to
// autoTrimMax idle pools, so pools for CGNAT addresses no longer seen go
// away without a timer, at a bounded cost per grant.
const (
	autoTrimEvery = 256
	autoTrimMax   = 16
)

// Trim drops every pool with no port in use whose last release is older
// than the quarantine, and returns how many it dropped. Grant already
// trims a few now and then; Trim is for tests and for a relay that
// wants its memory back at once. It costs one step per idle pool.
func (r *Relay) Trim() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trim(r.t.tick(), -1)
}

// trim drops up to max idle pools past quarantine (all when max < 0).
func (r *Relay) trim(now uint32, max int) int {
	n, seen := 0, 0
	for k := range r.idle {
		if max >= 0 && seen == max {
			break
		}
		seen++
		if p := r.pools[k]; p.Idle(now, r.t.q) {
			delete(r.pools, k)
			delete(r.idle, k)
			n++
		}
	}
	return n
}

// RelayStats is a snapshot of a Relay.
type RelayStats struct {
	InUse    int    // ports held now
	Pools    int    // (relay addr, public addr, proto) keys with state
	Granted  uint64 // grants since start (claims not included)
	Released uint64
}

// Stats snapshots r.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RelayStats{InUse: r.inUse, Pools: len(r.pools), Granted: r.granted, Released: r.released}
}

// HeldInbound is how many ports site holds for inbound flows.
func (r *Relay) HeldInbound(siteID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sites[siteID]; s != nil {
		return s.inbound
	}
	return 0
}

// Held is how many ports site holds.
func (r *Relay) Held(siteID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sites[siteID]; s != nil {
		return s.held
	}
	return 0
}

func (r *Relay) site(id string) (*site, error) {
	s := r.sites[id]
	if s == nil {
		return nil, refuse(ReasonUnknownSite, "site %q", id)
	}
	if s.held >= s.quota {
		return nil, refuse(ReasonSiteQuota, "site %q holds %d of %d ports", id, s.held, s.quota)
	}
	return s, nil
}

func (r *Relay) pool(k Key) *Pool {
	p := r.pools[k]
	if p == nil {
		p = NewPool(r.cfg.Ports, r.t.start(r.cfg.Ports.Len()))
		r.pools[k] = p
	}
	delete(r.idle, k)
	return p
}

func (r *Relay) maybeIdle(k Key) {
	if p := r.pools[k]; p != nil && p.InUse() == 0 {
		r.idle[k] = struct{}{}
	}
}

func (r *Relay) ownAddr(a netip.Addr) bool {
	for _, x := range r.cfg.Addrs {
		if x == a {
			return true
		}
	}
	return false
}
