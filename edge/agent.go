package edge

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

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

// agent is the edge: it wires its parts and implements
// control.ClientHandler. Its own fields are set once, before the agent
// runs; each part guards what it owns with its own lock (README.md: the
// parts and the lock order).
//
// Lock order: none of the agent's parts (sess, binds, rports, hs, inq,
// nat) calls another part, the flow table or the carrier ports while it
// holds its lock, so the agent takes one lock at a time. The only
// nesting is inside a part over what it owns: siteNAT.mu, then its pool
// of public ports (ports.Edge.mu). The flow table's and the allocators'
// locks (flows.Table, ports.Edge) are leaves. The port mapping table
// (portmap.Table) calls mapBackend under its own lock, and mapBackend
// takes one of the edge's at a time. Counters (m, openLatency)
// are atomic and take no lock.
type agent struct {
	s      *Settings
	log    *slog.Logger
	wan    netip.Addr // the edge's WAN IPv4: the carriers' source
	flows  *flows.Table
	ports  *ports.Edge
	policy *Policy
	ctl    *control.Client // set once before the client runs
	dp     *datapath       // nil when the agent runs without XDP (tests)
	// activity reads a flow's packet counters (datapathActivity, or a
	// fake in tests).
	activity activity
	poll     slowpath.Poller // reads activity into flows (activity.go)
	// inject sends an IP packet the agent made (the inbound TCP
	// handshake's segments); nil without a datapath.
	inject func([]byte) error

	openLatency *metrics.Latency   // outbound flows' miss to entries installed (collectors.go)
	m           *metrics.Counters  // slow-path events (metrics.go), for `unmap status` and /metrics
	icmpLimit   *ratelimit.Limiter // the time exceeded the edge sends (icmperr.go)

	// The parts.
	sess   *sessionState  // the relay's grant and whether the session is up (session.go)
	binds  *bindTokens    // carriers' bind tokens and proofs (bindtokens.go)
	rports *relayPorts    // the relay ports R the edge's flows use (relayports.go)
	hs     *tcpHandshakes // inbound TCP flows in their carrier handshake (handshakes.go)
	inq    *inboundQuota  // the accepted inbound flows and their bounds (inboundquota.go)
	nat    *siteNAT       // the site's public IPv4, when granted (sitenat.go)
}

// count records a slow-path event (a miss it could not use, a held packet
// it dropped) under a stable name.
func (a *agent) count(name string) { a.m.IncName(name) }

// Counts copies the slow-path counters that moved, by readable name.
func (a *agent) Counts() map[string]uint64 { return a.m.Snapshot() }

var _ control.ClientHandler = (*agent)(nil)

func newAgent(s *Settings, wan netip.Addr, log *slog.Logger) (*agent, error) {
	t, err := flows.New(flows.Options{Timeouts: flows.Timeouts(s.Timers)})
	if err != nil {
		return nil, err
	}
	p, err := ports.NewEdge(ports.EdgeConfig{Ports: s.CarrierPorts, InboundShare: s.Inbound.PortShare})
	if err != nil {
		return nil, err
	}
	return &agent{s: s, log: log, wan: wan, flows: t, ports: p, policy: NewPolicy(s.Allow, s.Forwards),
		m: edgeMetrics.New(), openLatency: newOpenLatency(), icmpLimit: slowpath.NewICMPLimit(),
		sess: &sessionState{}, binds: newBindTokens(), rports: &relayPorts{}, hs: newTCPHandshakes(),
		inq: newInboundQuota(s.Inbound), nat: newSiteNAT()}, nil
}

// Grant is the last session's grant, nil before the first one; up says
// whether that session is still up.
func (a *agent) Grant() (w *proto.Welcome, up bool) { return a.sess.get() }

func (a *agent) Connected(w *proto.Welcome) {
	fn := a.sess.connect(w)
	a.log.Info("session up", "session", w.SessionID, "prefix", w.Prefix, "ipv4", w.PublicIPv4)
	if fn != nil {
		fn(w)
	}
}

// Snapshot is the flow table as the relay should know it after a
// reconnect: only flows it had granted a carrier for. It holds no lock
// of the agent's while it walks the table.
func (a *agent) Snapshot() []proto.ReplayEntry {
	now := time.Now()
	var out []proto.ReplayEntry
	for _, e := range a.flows.Snapshot() {
		if e.State == flows.StateOpening || !e.Carrier.Relay.IsValid() {
			continue
		}
		out = append(out, proto.ReplayEntry{
			Flow:         e.Flow,
			CarrierProto: e.Carrier.Proto,
			EdgePort:     e.Carrier.Edge.Port(),
			Relay:        e.Carrier.Relay,
			Public:       e.Carrier.Public,
			LifetimeSec:  uint32(max(e.Expires.Sub(now), time.Second) / time.Second),
		})
	}
	a.binds.fill(out)
	return out
}

// Offer applies the inbound policy and, when it accepts, takes a carrier
// port for the flow. Opening the carrier through the CGNAT is the
// datapath's part.
func (a *agent) Offer(m *proto.FlowOffer) *proto.OfferReply {
	g, _ := a.Grant()
	if g == nil {
		return nil
	}
	to, why := a.policy.Decide(m.Flow, g.Prefix, g.PublicIPv4)
	if why != Accepted {
		a.log.Debug("inbound flow refused", "flow", m.Flow, "why", why)
		return nil
	}
	if m.Flow.Proto == session.TCP && m.CarrierProto == session.TCP {
		return a.offerTCP(m, to)
	}
	if m.CarrierProto != session.UDP {
		a.m.Inc(mInboundUnsupported)
		return &proto.OfferReply{Result: proto.CodeUnsupportedProto}
	}
	// The opener that binds the carrier is its proof (proof.go).
	token := proto.BindToken(session.NewSecret())
	c, err := a.takeInbound(m.Flow, m.CarrierProto, m.Relay, token)
	if err != nil {
		a.log.Warn("inbound flow not taken", "flow", m.Flow, "err", err)
		return &proto.OfferReply{Result: proto.CodeNoResources}
	}
	a.claimRelayPort(c)
	if err := a.flows.Update(m.Flow, c, flows.StateOpen); err != nil {
		a.drop(m.Flow, c)
		return &proto.OfferReply{Result: proto.CodeInternal}
	}
	lan := m.Flow
	if lan.Site.Addr().Is4() {
		// A port forward: the LAN host's private endpoint.
		lan = a.nat.inbound(m.Flow, to)
	}
	if a.dp != nil {
		if err := a.dp.mapFlow(lan, c); err != nil {
			a.log.Warn("inbound flow not mapped", "flow", m.Flow, "err", err)
			a.drop(m.Flow, c)
			return &proto.OfferReply{Result: proto.CodeInternal}
		}
		a.note(m.Flow, c)
		a.proveFirst(m.Flow, c, token)
	}
	return &proto.OfferReply{EdgePort: c.Edge.Port(), Token: token}
}

func (a *agent) Bound(m *proto.CarrierBound) {
	e, ok := a.flows.Get(m.Flow)
	if !ok {
		return
	}
	if m.Generation > 0 && e.Carrier.Public != m.Public {
		a.m.Inc(mRebound)
		a.log.Info("carrier re-bound by the relay", "flow", m.Flow, "from", e.Carrier.Public, "to", m.Public, "generation", m.Generation)
	}
	e.Carrier.Public = m.Public
	if err := a.flows.Update(m.Flow, e.Carrier, e.State); err != nil {
		a.log.Warn("carrier bound", "flow", m.Flow, "err", err)
		return
	}
	a.note(m.Flow, e.Carrier)
}

func (a *agent) Closed(m *proto.FlowClose) {
	if e, ok := a.flows.Get(m.Flow); ok {
		a.drop(m.Flow, e.Carrier)
		a.log.Debug("flow closed by the relay", "flow", m.Flow, "reason", m.Reason)
	}
}

func (a *agent) Disconnected(err error) {
	a.sess.disconnect()
	a.log.Warn("session down; flows keep forwarding", "err", err)
}

// Open maps an outbound flow: a carrier port E, the relay's R, and the
// flow in the table. token binds the carrier: a TCP carrier's ISN, or the
// secret a UDP carrier's proofs carry (proof.go). On any refusal
// nothing is left behind.
func (a *agent) Open(ctx context.Context, f session.Flow, carrierProto session.Proto, token proto.BindToken) (session.Carrier, error) {
	c, err := a.take(f, carrierProto, netip.AddrPort{}, token)
	if err != nil {
		return c, err
	}
	g, err := a.ctl.Open(ctx, &proto.FlowOpen{
		Flags:        proto.FlagHeld,
		Flow:         f,
		CarrierProto: carrierProto,
		EdgePort:     c.Edge.Port(),
		LifetimeSec:  uint32(a.flows.Timeouts().For(f.Proto, flows.StateOpen) / time.Second),
		Token:        token,
	})
	if err != nil {
		a.drop(f, c)
		return session.Carrier{}, err
	}
	c.Relay = g.Relay
	a.claimRelayPort(c)
	if err := a.markOpen(f, &c); err != nil {
		a.drop(f, c)
		return session.Carrier{}, err
	}
	return c, nil
}

// markOpen records that the relay granted f's carrier c. A CarrierBound
// may have come first (with edge-chooses-r the relay binds the carrier
// on an early packet while it grants): c takes the public side it told.
func (a *agent) markOpen(f session.Flow, c *session.Carrier) error {
	if e, ok := a.flows.Get(f); ok && !c.Public.IsValid() {
		c.Public = e.Carrier.Public
	}
	return a.flows.Update(f, *c, flows.StateOpen)
}

// Close ends a flow here and at the relay.
func (a *agent) Close(f session.Flow, reason proto.Code) {
	if e, ok := a.flows.Get(f); ok {
		a.drop(f, e.Carrier)
		if err := a.ctl.Close(f, reason); err != nil {
			a.log.Debug("flow close not sent; the next replay leaves it out", "flow", f, "err", err)
		}
	}
}

// take reserves a carrier port and puts the flow in the table, opening.
func (a *agent) take(f session.Flow, carrierProto session.Proto, relay netip.AddrPort, token proto.BindToken) (session.Carrier, error) {
	return a.takeFrom(a.ports.Grant, f, carrierProto, relay, token)
}

// takeFrom is take with the port from grant (an inbound flow's is
// within the inbound share: takeInbound).
func (a *agent) takeFrom(grant func(session.Proto) (uint16, error), f session.Flow, carrierProto session.Proto, relay netip.AddrPort, token proto.BindToken) (session.Carrier, error) {
	port, err := grant(carrierProto)
	if err != nil {
		return session.Carrier{}, err
	}
	c := session.Carrier{Proto: carrierProto, Edge: netip.AddrPortFrom(a.wan, port), Relay: relay}
	if err := a.flows.Add(f, c, flows.StateOpening); err != nil {
		a.releasePort(c)
		return session.Carrier{}, err
	}
	a.binds.set(f, token)
	return c, nil
}

// drop forgets a flow and gives its ports back.
func (a *agent) drop(f session.Flow, c session.Carrier) {
	if a.forget(f, c) {
		a.nat.release(f)
	}
}

// forget is drop but for the flow's public IPv4 port, which a flow that
// opens again keeps; false if the flow was already gone.
func (a *agent) forget(f session.Flow, c session.Carrier) bool {
	if _, err := a.flows.Delete(f); err != nil {
		return false // already gone: its port was given back then
	}
	a.gone(f, c)
	return true
}

// gone lets every part forget a flow the table no longer has, removes
// its entries and gives its carrier ports back; the public IPv4 port is
// the caller's.
func (a *agent) gone(f session.Flow, c session.Carrier) {
	a.binds.forget(f)
	a.hs.forget(f)
	a.inq.forget(f)
	a.unmap(f, c)
	a.releasePort(c)
}

// unmap removes a flow's entries from the datapath, if they are there.
func (a *agent) unmap(f session.Flow, c session.Carrier) {
	if a.dp == nil || !c.Relay.IsValid() {
		return
	}
	if out, back, err := a.edgePair(f, c); err == nil {
		_ = a.dp.XDP.Delete(out.Key)
		_ = a.dp.XDP.Delete(back.Key)
		if a.dp.notes != nil {
			a.dp.notes.delete(out.Key)
		}
	}
}

// edgePair is xdp.EdgePair for the flow as the LAN sees it: a flow of the
// site's public IPv4 is announced with its public source, but the
// datapath rewrites the LAN host's private one.
func (a *agent) edgePair(f session.Flow, c session.Carrier) (out, back xdp.Mapping, err error) {
	return xdp.EdgePair(a.nat.lan(f), c)
}

func (a *agent) releasePort(c session.Carrier) {
	if err := a.ports.Release(c.Proto, c.Edge.Port()); err != nil {
		a.log.Error("carrier port release", "carrier", c, "err", err)
	}
	a.rports.release(c)
}

// expire sweeps idle flows until ctx ends, telling the relay of each.
func (a *agent) expire(ctx context.Context) {
	const batch = 1024
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			gone := a.flows.Expire(nil, batch)
			for _, e := range gone {
				a.gone(e.Flow, e.Carrier)
				a.nat.release(e.Flow)
				_ = a.ctl.Close(e.Flow, proto.CodeExpired)
			}
			if len(gone) < batch {
				break
			}
		}
		next := time.Minute
		if when, ok := a.flows.NextDue(); ok {
			next = min(max(time.Until(when), 100*time.Millisecond), time.Minute)
		}
		t.Reset(next)
	}
}
