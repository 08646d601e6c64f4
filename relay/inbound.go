package relay

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/handshake"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
)

// maxHeld bounds the packets held for one inbound flow while the edge
// decides on it and opens its carrier; maxHeldTCP for a TCP flow, whose
// remote may send its whole initial window (10 segments, RFC 6928) while
// the carrier handshake completes.
const (
	maxHeld    = 8
	maxHeldTCP = 16
)

// inboundSetup bounds how long an inbound flow may take to be accepted
// and its carrier opened through the CGNAT before its packets are dropped.
const inboundSetup = 5 * time.Second

// inbound handles a packet to a site that has no flow yet: it offers the
// flow to the site's edge, holding the packet (and the next few of the
// flow) until the carrier is bound. A TCP flow is offered on its SYN,
// whose header goes in the offer; what follows is held until the carrier
// handshake completes (handshake.go).
func (c *agent) inbound(ctx context.Context, k xlat.Key, frame []byte) {
	f := session.Flow{Proto: session.Proto(k.Proto), Site: netip.AddrPortFrom(k.Dst, k.DPort), Remote: netip.AddrPortFrom(k.Src, k.SPort)}
	var syn *handshake.Segment
	if f.Proto == session.TCP {
		_, _, seg, err := handshake.Frame(frame)
		if err != nil {
			c.m.Inc(mInboundTCPUnreadable)
			return
		}
		syn = &seg
	}
	if !c.admitNew(f, syn) { // inboundgate.go: before any lock
		return
	}
	if c.inb.holdMore(f, syn, frame) {
		return
	}
	if syn != nil {
		c.flows.mu.Lock()
		if kc, ok := c.flows.lookup(f); ok && kc.public.IsValid() && kc.hs == nil {
			c.afterHandshake(f, kc, *syn, frame) // unlocks
			return
		}
		c.flows.mu.Unlock()
		if !syn.Is(handshake.SYN) {
			c.m.Inc(mInboundTCPNotSyn) // no flow to carry it: the remote's stack resets or retries
			return
		}
	}
	ss := c.owner(f.Site)
	if ss == nil {
		c.m.Inc(mInboundNoSession)
		return
	}
	released, code, cached := c.inb.admit(f, ss, c.sites.gates[ss.Site()], syn, frame, c.now())
	if cached && syn != nil && code == proto.CodeClosed {
		c.resetRemote(f, *syn) // as the host did
	}
	if released != nil {
		go c.offer(ctx, ss, f, syn, released)
	}
}

// holdMore holds one more packet of a flow held for its offer; false if
// the flow is not held.
func (b *inboundOffers) holdMore(f session.Flow, syn *handshake.Segment, frame []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.holdMoreLocked(f, syn, frame)
}

// holdMoreLocked is holdMore; b.mu held.
func (b *inboundOffers) holdMoreLocked(f session.Flow, syn *handshake.Segment, frame []byte) bool {
	h, ok := b.held[f]
	if !ok {
		return false
	}
	switch {
	case syn != nil && syn.Flags&handshake.SYN != 0:
		// The remote's SYN again: the edge has the first one.
		b.m.Inc(mInboundTCPSynAgain)
	case len(h) >= maxHeldTCP || (syn == nil && len(h) >= maxHeld):
		b.m.Inc(mInboundHeldOverflow)
	case b.heldN >= b.heldCap():
		b.m.Inc(mInboundHeldFull)
	default:
		b.held[f] = append(h, frame)
		b.heldAdd(1)
	}
	return true
}

// admit passes a new inbound flow of ss's site through the inbound
// bounds and, if it passes, holds its first packet and returns the
// channel closed when the held packets are released: the caller offers
// the flow. cached says the edge refused the flow a moment ago (with
// code), and is not asked again. share is the site's share of the
// relay-wide budget (inboundgate.go).
func (b *inboundOffers) admit(f session.Flow, ss edgeSide, share *siteGate, syn *handshake.Segment, frame []byte, now time.Time) (released chan struct{}, code proto.Code, cached bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holdMoreLocked(f, syn, frame) {
		return nil, 0, false // offered since holdMore looked (a caller other than the miss loop)
	}
	if code, ok := b.refused.get(f, ss.ID(), now); ok {
		b.m.Inc(mInboundRefusedCached)
		return nil, code, true
	}
	if syn == nil && b.heldN >= b.heldCap() {
		b.m.Inc(mInboundHeldFull)
		return nil, 0, false
	}
	if !b.allowOffer(ss.Site(), f.Remote.Addr(), now) {
		b.m.Inc(mInboundOfferRate)
		return nil, 0, false
	}
	if why := b.quota.admit(f, ss.Site(), now); why != "" {
		b.m.IncName(why)
		return nil, 0, false
	}
	// A new flow takes a token from the relay-wide budget and from its
	// site's share of it, and an offer slot, or none of them: the
	// tokens are looked at before anything is taken, the slot (which
	// can be given back) is taken next, the tokens (which cannot) last,
	// so a flow over its site's share spends nothing of the budget and a
	// flow refused for want of a slot spends no token. Tokens are taken
	// only here, under b.mu, so what was looked at is still there. A
	// flow over both is counted over the budget: over-site-share counts
	// what the share alone refused.
	switch {
	case !b.gate.allow(now, false):
		b.quota.forget(f)
		b.m.Inc(mInboundOverBudget)
		return nil, 0, false
	case !share.allow(&b.gate, now, false):
		b.quota.forget(f)
		b.m.Inc(mInboundOverSiteShare)
		return nil, 0, false
	case !b.takeSlot(ss.Site()):
		b.quota.forget(f)
		b.m.Inc(mInboundPendingFull)
		return nil, 0, false
	}
	b.gate.allow(now, true)
	share.allow(&b.gate, now, true)
	if syn != nil {
		b.held[f] = [][]byte{} // the SYN itself goes in the offer
	} else {
		b.held[f] = [][]byte{frame}
		b.heldAdd(1)
	}
	released = make(chan struct{})
	b.done[f] = released
	return released, 0, false
}

// offer asks the edge and, on accept, waits for the carrier to bind (TCP:
// for its handshake to complete); the held packets go out when it does
// (release closes released). syn is the remote's SYN of a TCP flow.
func (c *agent) offer(ctx context.Context, ss edgeSide, f session.Flow, syn *handshake.Segment, released <-chan struct{}) {
	start := time.Now() // the miss was read a moment ago (inbound's caller)
	defer c.offerDone(ss.Site())
	// A flow the edge did not take no longer counts against the quotas;
	// one it took counts until it is removed (agent.remove).
	taken := false
	defer func() {
		if !taken {
			c.inb.forget(f)
		}
	}()
	cp := session.UDP
	m := &proto.FlowOffer{Flow: f, LifetimeSec: uint32(c.udpTimeout / time.Second)}
	if syn != nil {
		cp = session.TCP
		h, err := syn.Header()
		if err != nil {
			c.dropFlow(f, syn, mInboundUnreadable, mInboundTCPUnreadable)
			return
		}
		m.SYN = h
	}
	m.CarrierProto = cp
	lease, err := c.offerLease(ss, cp)
	if err != nil {
		if errors.Is(err, ports.ErrInboundShare) {
			c.dropFlow(f, syn, mInboundPortShare, mInboundTCPPortShare) // the rest of the ports is kept for outbound flows
		} else {
			c.dropFlow(f, syn, mInboundNoPort, mInboundTCPNoPort)
		}
		return
	}
	m.Relay = lease.RelayAddr()
	lk := leaseKey{lease.Key, lease.Port}
	// A refused offer's port is kept for the next offer only once this
	// one no longer marks it offered (deferred calls run last first).
	unused := false
	defer func() {
		if unused {
			c.spare(ss.Site(), lease)
		}
	}()
	c.early.offered(lk, true, c.now())
	defer func() { c.early.offered(lk, false, c.now()) }()
	setup := c.inb.setupTime()
	ctx, cancel := context.WithTimeout(ctx, setup)
	defer cancel()
	r, err := ss.Offer(ctx, m)
	if err != nil {
		if r != nil {
			unused = true // the edge said no: it sent nothing on R
		} else {
			_ = c.ports.Release(lease) // it may answer late, and send
		}
		c.rememberRefusal(f, ss, r)
		c.dropFlow(f, syn, mInboundRefused, mInboundTCPRefused)
		c.log.Debug("inbound flow refused", "flow", f, "err", err)
		if syn != nil && errors.Is(err, proto.CodeClosed) {
			c.resetRemote(f, *syn) // the host itself said no: so does the remote's connect, at once
		}
		return
	}
	k := &carrier{site: ss.Site(), lease: lease, edgePort: r.EdgePort, token: r.Token, gen: ss.ID(), inbound: true,
		lifetime: c.timeouts.For(f.Proto, flows.StateOpen)}
	if syn != nil {
		k.hs = &tcpHandshake{syn: *syn}
	}
	c.flows.mu.Lock()
	c.add(f, k)
	taken = true
	early := c.early.take(leaseKey{lease.Key, lease.Port}, c.now())
	c.flows.mu.Unlock()
	// The edge sends its opener as it replies: it may have come first.
	for _, p := range early {
		c.carrierPacket(p.key, p.frame, true)
	}
	// The edge's opener binds the carrier (misses → bind → release); for
	// TCP its completing ACK does. If it never comes, the carrier, its
	// port and the held packets go at once (not at the idle expiry,
	// minutes later), and the edge is told to drop its side.
	select {
	case <-ctx.Done():
		c.giveUp(ss, f, k) // before the held packets go: a packet after that offers anew
		c.dropFlow(f, syn, mInboundNotOpened, mInboundTCPNotOpened)
	case <-released:
		c.openLatency.Observe(f.Proto.String(), time.Since(start))
	}
}

// giveUp removes an inbound flow whose carrier did not open in time (a
// UDP opener that never came, a TCP handshake that did not complete): its
// port and any entries go, and the edge is told.
func (c *agent) giveUp(ss edgeSide, f session.Flow, k *carrier) {
	c.flows.mu.Lock()
	mine := c.flows.get(f) == k
	if mine {
		c.remove(f, k)
	}
	c.flows.mu.Unlock()
	if mine && ss != nil {
		if err := ss.CloseFlow(f, proto.CodeTimeout); err != nil {
			c.log.Debug("flow close not sent", "flow", f, "err", err)
		}
	}
}

// dropFlow is drop for a flow of either kind: a TCP flow holds no packet
// of its own (its SYN went in the offer), so its end is counted once,
// under whyTCP.
func (c *agent) dropFlow(f session.Flow, syn *handshake.Segment, why, whyTCP metrics.Counter) {
	if syn != nil {
		c.m.Inc(whyTCP)
	}
	c.drop(f, why)
}

// drop forgets an inbound flow's held packets (if still held), counting
// them under why.
func (c *agent) drop(f session.Flow, why metrics.Counter) {
	b := c.inb
	b.mu.Lock()
	defer b.mu.Unlock()
	c.m.Add(why, uint64(len(b.held[f])))
	b.heldAdd(-len(b.held[f]))
	delete(b.held, f)
	delete(b.done, f)
}

// release sends an inbound flow's held packets through its new carrier.
func (c *agent) release(dp *datapath, f session.Flow, carrier session.Carrier) {
	b := c.inb
	b.mu.Lock()
	held := b.held[f]
	b.heldAdd(-len(held))
	delete(b.held, f)
	if ch, ok := b.done[f]; ok {
		close(ch)
		delete(b.done, f)
	}
	b.mu.Unlock()
	if dp != nil {
		dp.send(f, carrier, held, c.m)
	}
}

// heldAny reports whether one of the packets held for f is one fn says.
func (b *inboundOffers) heldAny(f session.Flow, fn func([]byte) bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.ContainsFunc(b.held[f], fn)
}

// owner is the live session of the site an endpoint belongs to.
func (c *agent) owner(a netip.AddrPort) edgeSide {
	site, ok := c.sites.siteOf(a)
	if !ok {
		return nil
	}
	if ss := c.sessions.session(site); ss != nil {
		return ss
	}
	if e := c.inb.edges[site]; e != nil {
		return e
	}
	return nil
}

// resetRemote answers the remote's SYN with the RST the LAN host sent,
// which the edge reported as CodeClosed.
func (c *agent) resetRemote(f session.Flow, syn handshake.Segment) {
	rst := handshake.Segment{SrcPort: syn.DstPort, DstPort: syn.SrcPort, Ack: syn.Seq + 1, Flags: handshake.RST | handshake.ACK}
	pkt, err := handshake.Packet(f.Site.Addr(), f.Remote.Addr(), rst)
	if err != nil || c.dp == nil {
		return
	}
	if err := c.dp.Inj.Packet(pkt); err != nil {
		c.m.Inc(mHandshakeSendFailed)
		return
	}
	c.m.Inc(mInboundTCPResetSent)
}
