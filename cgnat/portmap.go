package cgnat

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/portmap"
	"github.com/unmap-dev/unmap/session/cgnat"
)

// MapDatapath is what the subscribers' explicit mappings need of the
// datapath (*xdp.Datapath; a fake in the tests).
type MapDatapath interface {
	CGNATMapping(k cgnat.Key) (cgnat.Out, bool, error)
	MapExplicit(k cgnat.Key, pub netip.Addr, port uint16) error
	Unexplicit(k cgnat.Key) error
	ReleaseMapping(k cgnat.Key) error
	CGNATSlots() (map[cgnat.Slot]cgnat.In, error)
}

// mapBackend is the relay's portmap.Backend (a portmap.PerClient): a
// subscriber's mapping is an explicit mapping of the datapath (session/
// cgnat, explicit.go) at a port of the subscriber's own blocks, or its
// deterministic range, which admits any remote whatever the filtering
// mode and which the sweep leaves to its lifetime. An endpoint the
// subscriber's outbound flows mapped already keeps its public port (one
// per endpoint: endpoint-independent mapping) and is marked explicit;
// when the explicit mapping ends, such a mapping goes back to being an
// ordinary one (its filter and idle timeout again), and one the request
// made is released with its flows.
type mapBackend struct {
	a    *Agent
	dp   MapDatapath
	pins *mapPins // nil: mappings end with the relay
	log  *slog.Logger

	mu        sync.Mutex
	implicit  map[cgnat.Key]bool // the explicit mappings, and whether an implicit one was there first
	restoring map[cgnat.Key]bool // pinned ones being put back, likewise
}

func newMapBackend(a *Agent, dp MapDatapath, pins *mapPins, log *slog.Logger) *mapBackend {
	return &mapBackend{a: a, dp: dp, pins: pins, log: log, implicit: map[cgnat.Key]bool{}, restoring: map[cgnat.Key]bool{}}
}

func keyOf(m portmap.Mapping) cgnat.Key {
	return cgnat.Key{Addr: m.Internal.Addr(), Port: m.Internal.Port(), Proto: uint8(m.Proto)}
}

// External4 is not used: the address is each subscriber's (Place4).
func (b *mapBackend) External4() (netip.Addr, uint16, uint16) { return netip.Addr{}, 0, 0 }

// Place4 is the subscriber's address and the ports of its blocks, one
// granted if it holds none; the one port of an endpoint mapped already.
func (b *mapBackend) Place4(client netip.Addr, proto portmap.Proto, internal netip.AddrPort) (netip.Addr, []portmap.PortRange, portmap.Reason) {
	c := &b.a.s.Datapath
	if !client.Is4() || !c.Inside.Contains(client) {
		return netip.Addr{}, nil, portmap.NotAllowed
	}
	if proto != 0 && internal.IsValid() {
		o, ok, err := b.dp.CGNATMapping(cgnat.Key{Addr: internal.Addr(), Port: internal.Port(), Proto: uint8(proto)})
		if err != nil {
			b.log.Warn("port mapping: mapping lookup", "internal", internal, "err", err)
			return netip.Addr{}, nil, portmap.NoExternal
		}
		if ok {
			return o.Addr, []portmap.PortRange{{First: o.Port, Last: o.Port}}, portmap.OK
		}
	}
	ids, err := b.a.MapBlocks(client)
	if err != nil {
		b.a.M.Inc(mErrPortMap)
		b.log.Warn("port mapping: no block", "subscriber", client, "err", err)
		return netip.Addr{}, nil, portmap.NoExternal
	}
	if len(ids) == 0 {
		return netip.Addr{}, nil, portmap.NoFreePort // the pool is spent
	}
	var addr netip.Addr
	var ranges []portmap.PortRange
	for _, id := range ids {
		a, first := c.BlockAt(id)
		addr = a // paired pooling: all on one address
		ranges = append(ranges, portmap.PortRange{First: first, Last: first + uint16(c.BlockSize()-1)})
	}
	return addr, ranges, portmap.OK
}

// Add makes m's explicit mapping, or keeps it (a renewal, a restore).
func (b *mapBackend) Add(m portmap.Mapping) error {
	k := keyOf(m)
	b.mu.Lock()
	implicit, live := b.implicit[k]
	pinnedImplicit, restoring := b.restoring[k]
	b.mu.Unlock()
	if !live {
		implicit = pinnedImplicit
		if !restoring {
			o, ok, err := b.dp.CGNATMapping(k)
			if err != nil {
				return err
			}
			if ok && (o.Addr != m.External.Addr() || o.Port != m.External.Port()) {
				return portmap.ErrPortInUse
			}
			implicit = ok
		}
		err := b.dp.MapExplicit(k, m.External.Addr(), m.External.Port())
		if errors.Is(err, cgnat.ErrPortTaken) {
			return portmap.ErrPortInUse
		}
		if err != nil {
			return err
		}
	}
	if err := b.pins.put(m, implicit); err != nil {
		// The mapping works; it just will not outlive this relay.
		b.log.Warn("port mapping not pinned", "internal", m.Internal, "err", err)
	}
	b.mu.Lock()
	b.implicit[k] = implicit
	b.mu.Unlock()
	return nil
}

// Remove ends m's explicit mapping.
func (b *mapBackend) Remove(m portmap.Mapping) {
	k := keyOf(m)
	b.mu.Lock()
	implicit := b.implicit[k]
	delete(b.implicit, k)
	b.mu.Unlock()
	b.pins.delete(k)
	b.undo(k, implicit)
}

// undo takes k's explicit mapping out of the datapath.
func (b *mapBackend) undo(k cgnat.Key, implicit bool) {
	var err error
	if implicit {
		err = b.dp.Unexplicit(k)
	} else {
		err = b.dp.ReleaseMapping(k)
	}
	if err != nil {
		b.a.M.Inc(mErrPortMap)
		b.log.Warn("port mapping: datapath", "subscriber", k.Addr, "port", k.Port, "proto", k.Proto, "err", err)
	}
}

// PortMapper is PCP and NAT-PMP for the subscribers: the portmap server
// on the subscribers' interface over mapBackend.
type PortMapper struct {
	srv *portmap.Server
	tab *portmap.Table
	be  *mapBackend
	log *slog.Logger
}

// openPortMapper opens the server's sockets on the subscribers'
// interface and puts back the mappings a previous relay pinned in
// pinPath (pinPath "": none kept).
func openPortMapper(s *Settings, a *Agent, dp MapDatapath, pinPath string, log *slog.Logger) (*PortMapper, error) {
	log = log.With("part", "portmap")
	var pins *mapPins
	if pinPath != "" {
		var err error
		if pins, err = openMapPins(pinPath); err != nil {
			return nil, err
		}
	}
	be := newMapBackend(a, dp, pins, log)
	tab := portmap.NewTable(s.PortMap.Policy, be, log)
	t := s.Timeouts
	srv := portmap.NewServer(portmap.Config{Interface: s.Interface, PCP: s.PortMap.PCP, NATPMP: s.PortMap.NATPMP,
		Name: "unmap-relay", Log: log, OutboundTimeout: func(p portmap.Proto) time.Duration {
			if p == portmap.TCP {
				return t.TCPEstablished
			}
			return t.UDP
		}}, tab)
	if err := srv.Listen(); err != nil {
		return nil, errors.Join(err, pins.close())
	}
	p := &PortMapper{srv: srv, tab: tab, be: be, log: log}
	p.restore(time.Now())
	return p, nil
}

// restore puts the pinned mappings back in the table (those ended while
// the relay was down are undone), then turns any explicit mapping of
// the datapath that no pin accounts for back into an ordinary one.
func (p *PortMapper) restore(now time.Time) {
	be := p.be
	for _, pn := range be.pins.load() {
		k := keyOf(pn.m)
		be.mu.Lock()
		be.restoring[k] = pn.implicit
		be.mu.Unlock()
		why := p.tab.Restore(pn.m, now)
		be.mu.Lock()
		delete(be.restoring, k)
		be.mu.Unlock()
		if why != portmap.OK {
			be.pins.delete(k)
			if o, ok, err := be.dp.CGNATMapping(k); err == nil && ok && o.Addr == pn.m.External.Addr() && o.Port == pn.m.External.Port() {
				be.undo(k, pn.implicit)
			}
			if why != portmap.NotFound {
				p.log.Info("pinned port mapping not restored", "why", why, "internal", pn.m.Internal, "external", pn.m.External)
			}
		}
	}
	slots, err := be.dp.CGNATSlots()
	if err != nil {
		p.log.Warn("port mapping: slots", "err", err)
		return
	}
	for sl, in := range slots {
		if !in.Explicit || sl.Plane > 1 {
			continue
		}
		k := cgnat.Key{Addr: in.Addr, Port: in.Port, Proto: [2]uint8{6, 17}[sl.Plane]}
		be.mu.Lock()
		_, ok := be.implicit[k]
		be.mu.Unlock()
		if !ok {
			p.log.Info("explicit mapping without its pin: now an ordinary one", "subscriber", k.Addr, "port", k.Port, "proto", k.Proto)
			be.undo(k, true)
		}
	}
}

// Serve answers the subscribers until ctx ends; it first announces the
// server's new epoch (multicast on the interface, and to each client
// holding a restored PCP mapping).
func (p *PortMapper) Serve(ctx context.Context) error {
	defer p.be.pins.close()
	return p.srv.Serve(ctx)
}

// Status is the portmap section of the relay's `unmap status`: every
// mapping (who, what, until when) and the counters.
func (p *PortMapper) Status() any {
	type row struct {
		Via      string `json:"via"`
		Proto    string `json:"proto"`
		Client   string `json:"client"`
		Internal string `json:"internal"`
		External string `json:"external"`
		Until    string `json:"until"`
	}
	rows := []row{}
	for _, m := range p.tab.Mappings() {
		rows = append(rows, row{Via: m.Via.String(), Proto: m.Proto.String(), Client: m.Client.String(),
			Internal: m.Internal.String(), External: m.External.String(), Until: m.Expires.UTC().Format(time.RFC3339)})
	}
	return map[string]any{"mappings": rows, "counts": p.tab.Counts()}
}

// The port mapping service's metrics (OPERATING.md, "Metrics").
const (
	portMapRequestsName = "unmap_relay_portmap_requests_total"
	portMapEventsName   = "unmap_relay_portmap_events_total"
	portMapRefusedName  = "unmap_relay_portmap_refused_total"
	portMapActiveName   = "unmap_relay_portmap_mappings"
)

// Collectors are the service's metrics, read from its table's counters
// on each scrape.
func (p *PortMapper) Collectors() []prometheus.Collector {
	count := func(prefix string) func(string) float64 {
		return func(v string) float64 { return float64(p.tab.Counts()[prefix+v]) }
	}
	return []prometheus.Collector{
		metrics.NewLabeledCounter(portMapRequestsName, "Port mapping requests served to the CGNAT's subscribers, by protocol.", "protocol",
			func() []string { return []string{"pcp", "nat-pmp"} }, count("requests-")),
		metrics.NewLabeledCounter(portMapEventsName, "Subscribers' port mappings granted, released by their client, expired and restored after a restart, by event.", "event",
			func() []string { return []string{"granted", "released", "expired", "restored"} }, count("")),
		metrics.NewLabeledCounter(portMapRefusedName, "Subscribers' port mapping requests refused, by reason.", "reason",
			portmap.RefusalNames, count("refused-")),
		metrics.Gauge(portMapActiveName, "Subscribers' port mappings held now.", func() float64 { return float64(len(p.tab.Mappings())) }),
	}
}
