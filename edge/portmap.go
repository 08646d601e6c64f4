package edge

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/portmap"
	"github.com/unmap-dev/unmap/session"
)

// mapBackend is the edge's portmap.Backend: an IPv4 mapping is a dynamic
// port forward of the site's public IPv4 (its port claimed from the site
// NAT's pool, inside the relay's port share, so no outbound flow and no
// static forward can hold it), an IPv6 mapping an inbound allow rule for
// the host's address and port. Offers consult it after the static rules
// (Policy.Decide), and an accepted flow then takes exactly the path a
// static forward's or allow rule's does.
type mapBackend struct {
	nat  *siteNAT
	pins *mapPins // nil: mappings end with the agent

	log *slog.Logger

	mu    sync.Mutex
	fwd   map[mapKey]portmap.Mapping // IPv4: by public port
	holes map[mapKey]portmap.Mapping // IPv6: by the host's address and port
}

type mapKey struct {
	proto session.Proto
	ep    netip.AddrPort
}

func newMapBackend(nat *siteNAT, pins *mapPins, log *slog.Logger) *mapBackend {
	return &mapBackend{nat: nat, pins: pins, log: log, fwd: map[mapKey]portmap.Mapping{}, holes: map[mapKey]portmap.Mapping{}}
}

func (b *mapBackend) External4() (netip.Addr, uint16, uint16) {
	public, r := b.nat.external()
	return public, r.First, r.Last
}

// Add and Remove take b.mu only over b's own maps, never while they ask
// the site NAT or the pins: the portmap.Table calls them one at a time,
// under its lock, so nothing comes between the look and the change.
func (b *mapBackend) Add(m portmap.Mapping) error {
	k := mapKey{session.Proto(m.Proto), m.External}
	if !m.External.Addr().Is6() && !b.has(k) {
		if err := b.nat.claimMapped(k.proto, m.External, m.Internal); err != nil {
			return portmap.ErrPortInUse
		}
	}
	b.mu.Lock()
	if m.External.Addr().Is6() {
		b.holes[k] = m
	} else {
		b.fwd[k] = m
	}
	b.mu.Unlock()
	if err := b.pins.put(m); err != nil {
		// The mapping works; it just will not outlive this agent.
		b.log.Warn("port mapping not pinned", "external", m.External, "err", err)
	}
	return nil
}

// has reports whether b holds the IPv4 mapping of k (a renewal).
func (b *mapBackend) has(k mapKey) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.fwd[k]
	return ok
}

func (b *mapBackend) Remove(m portmap.Mapping) {
	k := mapKey{session.Proto(m.Proto), m.External}
	b.pins.delete(m)
	b.mu.Lock()
	_, fwd := b.fwd[k]
	delete(b.fwd, k)
	if m.External.Addr().Is6() {
		delete(b.holes, k)
		fwd = false
	}
	b.mu.Unlock()
	if fwd {
		b.nat.releaseMapped(k.proto, m.External, m.Internal)
	}
}

// lookup is where an inbound flow goes by a mapping: the LAN host's
// endpoint, if a mapping of the flow's destination admits its remote.
// Flows already accepted keep going when their mapping ends (like a
// static rule's when the configuration changes); new ones are refused.
func (b *mapBackend) lookup(f session.Flow) (netip.AddrPort, bool) {
	if f.Proto != session.TCP && f.Proto != session.UDP {
		return netip.AddrPort{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := mapKey{f.Proto, f.Site}
	m, ok := b.fwd[k]
	if f.Site.Addr().Is6() {
		m, ok = b.holes[k]
	}
	if !ok || !m.Admits(f.Remote) {
		return netip.AddrPort{}, false
	}
	return m.Internal, true
}

// portMapper is the edge's port mapping service: the server and its
// table over mapBackend.
type portMapper struct {
	srv     *portmap.Server
	tab     *portmap.Table
	be      *mapBackend
	log     *slog.Logger
	mu      sync.Mutex
	last    netip.Addr        // the public IPv4 the IPv4 mappings are on
	pending []portmap.Mapping // pinned IPv4 mappings waiting for the grant of their address
}

// openPortMapper opens the LAN sockets of the switched-on protocols (as
// root, before privileges are dropped); nil when all are off.
func openPortMapper(s *Settings, a *agent, log *slog.Logger) (*portMapper, error) {
	if !s.PortMap.On() {
		return nil, nil
	}
	log = log.With("part", "portmap")
	pol := s.PortMap.Policy
	if len(pol.Allowed) == 0 {
		// Default: IPv4 hosts of the LAN interface's networks, as for
		// static forwards; IPv6 hosts of the site's prefix (offers for
		// any other address are refused before mappings are asked).
		nets, err := ifacePrefixes4(s.LAN)
		if err != nil {
			return nil, err
		}
		for _, n := range nets {
			pol.Allowed = append(pol.Allowed, n.Masked())
		}
		pol.Allowed = append(pol.Allowed, netip.MustParsePrefix("::/0"))
	}
	pins, err := openMapPins(s.PinPath)
	if err != nil {
		return nil, err
	}
	be := newMapBackend(a.nat, pins, log)
	tab := portmap.NewTable(pol, be, log)
	timers := s.Timers
	srv := portmap.NewServer(portmap.Config{Interface: s.LAN, PCP: s.PortMap.PCP, NATPMP: s.PortMap.NATPMP, UPnP: s.PortMap.UPnP,
		HTTPPort: s.PortMap.UPnPPort, Name: s.Site, Log: log,
		OutboundTimeout: func(p portmap.Proto) time.Duration {
			if p == portmap.TCP {
				return timers.TCPEstablished
			}
			return timers.UDP
		}}, tab)
	if err := srv.Listen(); err != nil {
		pins.close()
		return nil, err
	}
	a.policy.dynamic = be.lookup
	p := &portMapper{srv: srv, tab: tab, be: be, log: log}
	// What the last agent granted comes back: IPv6 pinholes now, IPv4
	// forwards once the relay grants their address again.
	now := time.Now()
	for _, m := range pins.load() {
		if m.Internal.Addr().Is4() && now.Before(m.Expires) {
			p.pending = append(p.pending, m)
			continue
		}
		p.restore(m, now)
	}
	return p, nil
}

// restore puts back a pinned mapping, or unpins it.
func (p *portMapper) restore(m portmap.Mapping, now time.Time) {
	if why := p.tab.Restore(m, now); why != portmap.OK {
		p.be.pins.delete(m)
		if why != portmap.NotFound {
			p.log.Info("pinned port mapping not restored", "why", why, "client", m.Client, "internal", m.Internal, "external", m.External)
		}
	}
}

// serve runs the server until ctx ends.
func (p *portMapper) serve(ctx context.Context) error {
	if p == nil {
		return nil
	}
	defer p.be.pins.close()
	return p.srv.Serve(ctx)
}

// granted follows the relay's grant of the public IPv4: IPv4 mappings of
// another address are gone (the site NAT started a fresh pool), and the
// hosts are told to map again.
func (p *portMapper) granted(public netip.Addr) {
	if p == nil {
		return
	}
	p.mu.Lock()
	changed := p.last.IsValid() && p.last != public
	p.last = public
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	now := time.Now()
	for _, m := range pending {
		p.restore(m, now) // of another address: refused and unpinned
	}
	if changed {
		n := p.tab.DropIPv4()
		p.log.Warn("public IPv4 changed: IPv4 port mappings dropped, LAN hosts told to map again", "mappings", n, "ipv4", public)
		p.srv.Announce()
	}
}

// status is the portmap section of `unmap status`.
func (p *portMapper) status() any { return p.tab.Status() }
