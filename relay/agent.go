package relay

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/ratelimit"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// carrier is what the relay keeps for one flow: the port R it leased and
// what binds the carrier at its first packet.
type carrier struct {
	site     string
	lease    ports.Lease
	edgePort uint16
	token    proto.BindToken
	gen      uint64         // session that last opened or replayed it
	public   netip.AddrPort // the CGNAT's side, once bound by the first packet
	inbound  bool           // opened by an offer: bound by the edge's opener, which goes no further
	hs       *tcpHandshake  // an inbound TCP flow until its carrier handshake completes
	rebinds  uint16         // times the carrier was re-bound to another CGNAT port (CarrierBound.Generation)
	// movedAsked is when the edge was last asked to prove the carrier
	// (CarrierMoved), which is rate-limited.
	movedAsked time.Time

	// Idle expiry (expire.go): the lifetime the edge asked for.
	lifetime time.Duration
	closed   bool // its TCP connection ended (FIN both ways, or RST): transitory timeout
	// An inbound TCP flow after its handshake: the host's SYN/ACK as the
	// remote got it (sent again when the remote resends its SYN), and
	// whether the remote-to-carrier entry is in: it waits for the
	// remote's first segment without SYN, so a SYN the remote resends is
	// never put on the carrier.
	synAck []byte
	backIn bool

	sl siteLink // its place among its site's flows (sitelist.go)
}

// leaseKey finds a carrier by what its packets arrive with: the relay
// port R is unique per (relay address, public address, protocol).
type leaseKey struct {
	ports.Key
	port uint16
}

// The lock order. Each part has its own lock and, holding it, calls no
// other part, with one exception: the flow registry's lock
// (flowRegistry.mu) comes first, and a path holding it may take, one at
// a time and never nested in one another, the lock of the pinned
// takeover (a replay adopts or replaces pinned entries; mapping a
// carrier replaces pinned entries in its way), of the early holds (a
// bind holds a packet, an open takes what was held), of the inbound
// offers (a flow's end frees its quota, a handshake reads its held
// packets, the sweep judges unanswered flows) and of the sessions (the
// live session told of a binding, whether a CGNAT address's session
// picks R). The sessions', inbound offers', early holds' and pinned
// takeover's locks are never held together. Below all of them are the
// leaves, which call nothing: the bind budgets, the map-failure log,
// the ICMP error limit and the port allocator (session/ports); the
// counters (metrics) and each site's flow events (sessionBook.count)
// need no lock, and neither do the fast paths that find nothing pinned,
// nothing held early, no inbound flow counted. Paths that need no flow take no
// registry lock: a new inbound flow's admission, a Pong, a session's
// start and end.
//
// agent is the relay agent: the thin type that wires its parts
// together and implements control.Handler. It turns flow opens into
// leased carrier ports and keeps them across reconnects, because the
// edge's table is authoritative and a replay brings the flows back. It
// holds no state of its own beyond what it is given at start: each part
// keeps its own behind its own lock, in the order doc.go gives.
type agent struct {
	log         *slog.Logger
	ports       *ports.Relay      // the carrier ports: an allocator with its own lock
	m           *metrics.Counters // slow-path events (metrics.go): no lock
	openLatency *metrics.Latency  // inbound flows' miss to entries installed (collectors.go)
	udpTimeout  time.Duration
	timeouts    flows.Timeouts
	now         func() time.Time
	dp          *datapath // nil when the relay runs without XDP (tests)
	activity    activity  // reads a flow's packet counters; nil without a datapath

	// The parts.
	flows      *flowRegistry      // every flow and its carrier, by flow, site, lease and deadline (registry.go, expire.go)
	sessions   *sessionBook       // the edges' sessions, and each site's flow events (sessions.go)
	sites      siteMap            // what each site is granted; set at start, no lock (sites.go)
	inb        *inboundOffers     // inbound offers, their held packets and bounds (inboundlimits.go)
	early      *earlyHolds        // carrier packets that beat what binds them (early.go)
	pinned     *pinnedSet         // flows the pinned datapath held at start, until replayed (pinned.go)
	bindBudget bindBudgets        // failed binds by CGNAT address (bindlimit.go)
	icmpLimit  *ratelimit.Limiter // ICMP errors relayed, by site; "": the relay's own
	mapLog     mapLog             // when a datapath refusal was last logged (maplog.go)
}

// peer is what the carriers need of the session a message came on:
// *control.Session, or a fake in tests.
type peer interface {
	Site() string
	ID() uint64
	RemoteAddr() net.Addr
}

// sessionInfo is a session as `unmap status` shows it.
type sessionInfo struct {
	ID    uint64    `json:"id"`
	From  string    `json:"from"` // the edge's address as the relay sees it: the CGNAT's public side
	Since time.Time `json:"since"`
}

var _ control.Handler = (*agent)(nil)

func newAgent(s *Settings, log *slog.Logger) (*agent, error) {
	p, err := ports.NewRelay(ports.RelayConfig{Addrs: s.Addresses, Ports: s.CarrierPorts, InboundShare: s.Inbound.PortShare})
	if err != nil {
		return nil, err
	}
	for _, site := range s.Sites {
		p.SetSite(site.ID, site.MaxFlows)
	}
	c := &agent{log: log, ports: p,
		m: relayMetrics.New(), openLatency: newOpenLatency(), sites: newSiteMap(s),
		udpTimeout: s.Timers.UDP, timeouts: flows.Timeouts(s.Timers).WithDefaults(), now: time.Now,

		icmpLimit: slowpath.NewICMPLimit()}
	c.sessions = newSessionBook(c.exemptMisses)
	c.early = newEarlyHolds(c.m)
	c.inb = newInboundOffers(s.Inbound, p, c.m, log)
	c.pinned = &pinnedSet{ports: p, m: c.m, log: log, del: c.deleteKey}
	if c.flows, err = newRegistry(flows.Options{Timeouts: c.timeouts, Grace: expireGrace, Now: func() time.Time { return c.now() }}); err != nil {
		return nil, err
	}
	return c, nil
}

// publicAddr is the CGNAT address a session's edge appears from: its
// carriers come from the same address (RFC 4787 REQ-2, paired pooling).
func publicAddr(ss interface{ RemoteAddr() net.Addr }) netip.Addr {
	if u, ok := ss.RemoteAddr().(*net.UDPAddr); ok {
		if a, ok := netip.AddrFromSlice(u.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// code turns an allocator refusal into the code the edge is told.
func code(err error) proto.Code {
	switch {
	case errors.Is(err, ports.ErrSiteQuota):
		return proto.CodeQuotaExceeded
	case errors.Is(err, ports.ErrExhausted), errors.Is(err, ports.ErrQuarantined):
		return proto.CodeNoResources
	case errors.Is(err, ports.ErrInUse):
		return proto.CodeFlowExists
	case errors.Is(err, ports.ErrOutOfRange), errors.Is(err, ports.ErrNotGranted):
		return proto.CodeAddressNotGranted
	}
	return proto.CodeInternal
}

func (c *agent) Started(ss *control.Session) { c.sessions.started(ss) }

// exemptMisses lets carriers' first packets from pub past the miss
// bound, or no longer; the sessions' lock held.
func (c *agent) exemptMisses(pub netip.Addr, on bool) {
	if c.dp == nil {
		return
	}
	if err := c.dp.XDP.ExemptMissSource(pub, on); err != nil {
		c.m.Inc(mMissExemptFailed)
		c.log.Warn("miss bound exemption", "from", pub, "on", on, "err", err)
	}
}

// Open leases a relay port R for an outbound flow: the one the edge
// picked (edge-chooses-r), or one of the relay's choosing. Opening a flow
// the site already has on the same edge port is answered with the same
// carrier, so a retried FlowOpen is harmless. Carrier packets that beat
// the FlowOpen bind now.
func (c *agent) Open(ss *control.Session, m *proto.FlowOpen) *proto.FlowGrant {
	g, early := c.open(ss, m)
	for _, p := range early {
		c.carrierPacket(p.key, p.frame, true)
	}
	return g
}

func (c *agent) open(ss peer, m *proto.FlowOpen) (*proto.FlowGrant, []earlyPkt) {
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	if old, ok := c.flows.lookup(m.Flow); ok {
		if old.site != ss.Site() || old.edgePort != m.EdgePort || old.lease.Proto != m.CarrierProto {
			c.sessions.count(ss.Site(), countRefusal)
			return &proto.FlowGrant{Result: proto.CodeFlowExists}, nil
		}
		old.gen, old.token = ss.ID(), m.Token
		return &proto.FlowGrant{Relay: old.lease.RelayAddr(), LifetimeSec: uint32(old.lifetime / time.Second)}, nil
	}
	// Pinned entries of the flow are not the edge's any more: it opens
	// the flow anew.
	c.pinned.replace(backKey(m.Flow))
	var lease ports.Lease
	var err error
	if m.Relay.IsValid() {
		// The edge picked R and may already be sending on it: that very
		// port or nothing (the edge then lets the relay choose). The
		// relay's quarantine does not apply: the edge keeps its own for
		// the ports it picks, and a stray packet from another carrier
		// cannot bind without this flow's token.
		k := ports.Key{Relay: m.Relay.Addr(), Public: publicAddr(ss), Proto: m.CarrierProto}
		lease, err = c.ports.Claim(ss.Site(), k, m.Relay.Port())
	} else {
		lease, err = c.ports.Grant(ss.Site(), publicAddr(ss), m.CarrierProto)
	}
	if err != nil {
		c.log.Debug("flow refused", "site", ss.Site(), "flow", m.Flow, "relay", m.Relay, "err", err)
		c.sessions.count(ss.Site(), countRefusal)
		return &proto.FlowGrant{Result: code(err)}, nil
	}
	life := c.lifetimeCap(m.Flow.Proto, m.LifetimeSec)
	c.add(m.Flow, &carrier{site: ss.Site(), lease: lease, edgePort: m.EdgePort, token: m.Token, gen: ss.ID(), lifetime: life})
	c.m.Inc(mOpened)
	c.sessions.count(ss.Site(), countOpen)
	return &proto.FlowGrant{Relay: lease.RelayAddr(), LifetimeSec: uint32(life / time.Second)}, c.early.take(leaseKey{lease.Key, lease.Port}, c.now())
}

// Replayed takes back a flow the edge still has after a reconnect or a
// relay restart, on the very port it had.
func (c *agent) Replayed(ss *control.Session, e *proto.ReplayEntry) proto.Code {
	return c.replayed(ss, e)
}

func (c *agent) replayed(ss peer, e *proto.ReplayEntry) proto.Code {
	code, tell := c.replayedLocked(ss, e)
	if tell != nil {
		tell()
	}
	if code != proto.CodeOK {
		c.sessions.count(ss.Site(), countRefusal)
	}
	return code
}

// replayedLocked is Replayed's work; tell, if not nil, sends the edge
// what it must hear once c.flows.mu is released.
func (c *agent) replayedLocked(ss peer, e *proto.ReplayEntry) (_ proto.Code, tell func()) {
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	if old, ok := c.flows.lookup(e.Flow); ok {
		if old.site != ss.Site() || old.lease.RelayAddr() != e.Relay || old.lease.Proto != e.CarrierProto {
			return proto.CodeFlowExists, nil
		}
		old.gen = ss.ID()
		c.m.Inc(mReplayed) // kept across the edge's reconnect or restart
		return proto.CodeOK, nil
	}
	pub := publicAddr(ss)
	if why := c.checkReplayLocked(pub, e); !why.IsZero() {
		c.m.Inc(why)
		// Debug, as a refused open: a replay is up to 512 entries a
		// message, and the counter says it.
		c.log.Debug("replayed flow refused", "site", ss.Site(), "flow", e.Flow, "relay", e.Relay, "public", e.Public, "why", why.Name())
		return proto.CodeAddressNotGranted, nil
	}
	lk := leaseKey{ports.Key{Relay: e.Relay.Addr(), Public: pub, Proto: e.CarrierProto}, e.Relay.Port()}
	lease, ok := c.pinned.lease(ss.Site(), lk)
	if !ok {
		var err error
		if lease, err = c.ports.Claim(ss.Site(), lk.Key, lk.port); err != nil {
			c.m.Inc(replayRefusedByCode(code(err)))
			return code(err), nil
		}
	}
	k := &carrier{site: ss.Site(), lease: lease, edgePort: e.EdgePort, token: e.Token, gen: ss.ID(),
		lifetime: c.lifetimeCap(e.Flow.Proto, e.LifetimeSec)}
	c.add(e.Flow, k)
	c.m.Inc(mReplayedClaimed) // taken back after a relay restart
	k.public = e.Public
	if pc, same := c.pinned.carrierOf(e.Flow, lease); same && !k.public.IsValid() {
		// The edge never heard its carrier bound (the last agent went
		// before its CarrierBound did), but the entries it put in when a
		// packet with the flow's token bound it are still there.
		k.public = pc.Public
		tell = c.tellBound(e.Flow, k)
	}
	if !k.public.IsValid() {
		// Not bound yet: its first packet binds it. Entries of the flow
		// on another carrier are the edge's no more.
		c.pinned.replace(backKey(e.Flow))
		return proto.CodeOK, nil
	}
	if c.adoptPinnedLocked(e.Flow, k) {
		return proto.CodeOK, tell
	}
	// Bound before the restart: map it again at once, so the flow
	// forwards without waiting for a packet to bind it. A flow the
	// datapath cannot hold is refused, not kept half-installed: the edge
	// hears FlowClose and opens it anew.
	if !c.mapCarrier(e.Flow, k) {
		c.remove(e.Flow, k)
		c.m.Inc(replayRefusedByCode(proto.CodeNoResources))
		return proto.CodeNoResources, nil
	}
	return proto.CodeOK, tell
}

// checkReplayLocked checks what a replayed entry says about a carrier the
// relay does not know, as a FlowOpen's would be: the relay can only trust
// what it saw itself. pub is the CGNAT address the session comes from.
// It returns the counter of why the entry is refused, none if it is not.
// c.flows.mu held.
func (c *agent) checkReplayLocked(pub netip.Addr, e *proto.ReplayEntry) metrics.Counter {
	if !e.Public.IsValid() {
		return metrics.Counter{} // never bound: its first packet binds it, from pub
	}
	// The carrier's CGNAT side is the session's own CGNAT address (paired
	// pooling, RFC 4787 REQ-2; the relay grants R keyed on it too): any
	// other address would let an edge aim the relay's carrier traffic at
	// a host of its choosing (a reflector from the relay's own address),
	// or hold ports keyed on another site's CGNAT address.
	if e.Public.Addr() != pub {
		return mReplayRefusedPublicAddress
	}
	// A NAT maps a port of 1024 and up to one of 1024 and up (RFC 4787
	// §4.2.1), and the edge's carrier ports are above the system ports
	// (edge.yaml carrier_ports): a lower TCP or UDP port is not a
	// carrier's. ICMP carriers have an echo identifier instead, any value.
	if e.CarrierProto != session.ICMP && e.Public.Port() < config.MinCarrierPort {
		return mReplayRefusedPublicPort
	}
	return metrics.Counter{}
}

// lifetimeCap is the lifetime the relay keeps an idle flow for at most:
// its own timeout for the flow's protocol. An edge asks for what its
// timeouts say, but may not hold the relay's ports for longer (a lifetime
// of a century would never expire).
func (c *agent) lifetimeCap(p session.Proto, sec uint32) time.Duration {
	return min(time.Duration(sec)*time.Second, c.timeouts.For(p, flows.StateOpen))
}

// adoptPinnedLocked takes over the pinned entries of a replayed flow if
// they are what mapping k would install: they stay as they are, so the
// flow never stops and its counters go on. c.flows.mu held.
func (c *agent) adoptPinnedLocked(f session.Flow, k *carrier) bool {
	out, back, err := xdp.RelayPair(f, k.carrier())
	if err != nil {
		return false
	}
	held, ok := c.pinned.adopt(out, back)
	if !ok {
		return false // mapCarrier replaces what holds its keys
	}
	c.syncLocked(f, k) // bound, as the entries say
	if held.Port != 0 && held != k.lease {
		_ = c.ports.Release(held) // not the replay's port: cannot be, but never leak one
	}
	c.m.Inc(mReplayedPinned)
	return true
}

// ReplayDone drops the site's flows the edge no longer has, and the
// pinned ones its replay left out.
func (c *agent) ReplayDone(ss *control.Session) { c.replayDone(ss) }

func (c *agent) replayDone(ss peer) {
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	n := 0
	c.flows.bySite[ss.Site()].each(func(f session.Flow, k *carrier) {
		if k.gen != ss.ID() {
			c.remove(f, k)
			n++
		}
	})
	pinned := c.pinned.dropSite(ss.Site())
	c.log.Info("replay done", "site", ss.Site(), "dropped", n, "pinned_dropped", pinned)
}

func (c *agent) Closed(ss *control.Session, m *proto.FlowClose) {
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	if k, ok := c.flows.lookup(m.Flow); ok && k.site == ss.Site() {
		c.remove(m.Flow, k)
		c.sessions.count(k.site, countClose)
	}
}

// Ended keeps the site's flows: the datapath goes on forwarding them and
// the edge replays them when it is back.
func (c *agent) Ended(ss *control.Session, err error) {
	c.log.Info("session ended", "site", ss.Site(), "session", ss.ID(), "err", err)
	c.sessions.ended(ss)
}

func (c *agent) add(f session.Flow, k *carrier) {
	c.flows.put(f, k)
}

// remove ends flow f on carrier k: its entries, its port, its deadline.
func (c *agent) remove(f session.Flow, k *carrier) {
	c.flows.t.Remove(f)
	c.releaseFlow(f, k)
}

// releaseFlow is remove for a flow the expiry table no longer has.
func (c *agent) releaseFlow(f session.Flow, k *carrier) {
	if c.dp != nil && k.public.IsValid() {
		c.dp.unmap(f, k.carrier())
	}
	if err := c.ports.Release(k.lease); err != nil {
		c.log.Error("port release", "flow", f, "err", err)
	}
	c.flows.unbook(k)
	c.inb.forget(f) // an inbound flow no longer counts against its site's and remote's quotas
}

// carrier is k as the datapath needs it.
func (k *carrier) carrier() session.Carrier {
	return session.Carrier{Proto: k.lease.Proto, Relay: k.lease.RelayAddr(), Public: k.public}
}

// mapCarrier installs a bound carrier in the datapath, replacing pinned
// entries that hold its keys; c.flows.mu must be held.
func (c *agent) mapCarrier(f session.Flow, k *carrier) bool {
	if c.dp == nil {
		c.syncLocked(f, k)
		return true
	}
	c.pinned.replaceOf(f, k, true, true)
	if err := c.dp.mapFlow(f, k.carrier()); err != nil {
		c.mapFailedLocked(f, err)
		return false
	}
	c.syncLocked(f, k)
	return true
}

// carrierStatus is the carriers section of `unmap status`.
type carrierStatus struct {
	Sessions map[string]sessionInfo  `json:"sessions"`
	Slowpath map[string]uint64       `json:"slowpath"`
	Flows    map[string]int          `json:"flows_by_site"`
	Ports    ports.RelayStats        `json:"ports"`
	Refused  map[ports.Reason]uint64 `json:"ports_refused"`
	Rebound  []rebound               `json:"rebound,omitempty"` // carriers the CGNAT moved, at most maxRebound
	Pinned   int                     `json:"pinned_waiting"`    // flows found in the pinned datapath at start, waiting for their replay
}

// rebound is a re-bound carrier as `unmap status` shows it.
type rebound struct {
	Flow       string `json:"flow"`
	Public     string `json:"public"`
	Generation uint16 `json:"generation"`
}

const maxRebound = 32

func (c *agent) status() any {
	c.flows.mu.Lock()
	by := map[string]int{}
	var rb []rebound
	for site, fs := range c.flows.bySite {
		by[site] = fs.n
		fs.each(func(f session.Flow, k *carrier) {
			if k.rebinds > 0 && len(rb) < maxRebound {
				rb = append(rb, rebound{Flow: f.String(), Public: k.public.String(), Generation: k.rebinds})
			}
		})
	}
	counts := c.m.Snapshot()
	c.flows.mu.Unlock()
	pinned := c.pinned.count()
	sessions := c.sessions.sessions()
	return carrierStatus{Sessions: sessions, Slowpath: counts, Flows: by, Ports: c.ports.Stats(), Refused: c.ports.Refused.Snapshot(), Rebound: rb, Pinned: pinned}
}
