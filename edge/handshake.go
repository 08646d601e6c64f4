package edge

import (
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/handshake"
)

// tcpInbound is the edge's side of an inbound TCP flow's carrier
// handshake (session/handshake): the remote's SYN goes to the LAN host,
// the host's SYN/ACK becomes the carrier SYN (its ISN is the bind token),
// and the relay's SYN/ACK, from the CGNAT, is answered with the ACK that
// completes the CGNAT's view. Until the relay's SYN/ACK no entry exists,
// so the host's SYN/ACK and the relay's SYN/ACK both come to the agent as
// misses and neither is translated. Then only the carrier-to-host entry
// goes in; the host-to-carrier entry waits for the host's first segment
// without SYN, so a SYN/ACK the host sends again is never translated onto
// the carrier as a SYN/ACK (the CGNAT would take it for an invalid
// packet): it is dropped and counted.
type tcpInbound struct {
	flow     session.Flow
	carrier  session.Carrier   // E and R
	syn      handshake.Segment // the remote's SYN, from the offer
	answered chan struct{}     // closed at the host's first SYN/ACK or RST

	// The rest is guarded by agent.mu.
	hostSA     handshake.Segment // the host's SYN/ACK, once answered
	reset      bool              // the host answered with a RST
	carrierSYN []byte            // the carrier SYN, once built
	ack        []byte            // the completing ACK, once the relay answered
	done       bool              // the relay answered: the carrier-to-host entry is in
	outIn      bool              // the host-to-carrier entry is in too
}

// The handshake's timers: how long the host has to answer the SYN (it is
// sent again once; the relay gives an offer 5 s), and when the carrier SYN
// and the completing ACK are sent (again) until the relay answers.
var (
	hostAnswerSchedule = []time.Duration{time.Second, 2 * time.Second}
	carrierSYNSchedule = []time.Duration{0, 100 * time.Millisecond, 600 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second}
	completeSchedule   = []time.Duration{300 * time.Millisecond, time.Second, 2 * time.Second}
)

// maxHostWaits bounds the inbound TCP offers waiting for the LAN host's
// answer at once: each holds a carrier port for up to 3 s
// (hostAnswerSchedule), so a SYN flood to an allowed port could
// otherwise hold the edge's ports. The relay offers at most 64 a site at
// once; this holds whatever the relay does. Beyond it an offer is refused
// with CodeNoResources (counted inbound-tcp-pending-full), which the
// relay does not remember: the next SYN may be offered again.
const maxHostWaits = 64

// offerTCP runs the edge's part of an accepted inbound TCP offer up to
// the carrier SYN: the reply carries the host's ISN as the bind token. to
// is the LAN host's endpoint: the flow's site end, or for a port forward
// of the public IPv4 the forward's target, to which the SYN is rewritten.
func (a *agent) offerTCP(m *proto.FlowOffer, to netip.AddrPort) *proto.OfferReply {
	syn, err := handshake.Parse(m.SYN)
	if err != nil || !syn.Is(handshake.SYN) || syn.SrcPort != m.Flow.Remote.Port() || syn.DstPort != m.Flow.Site.Port() {
		a.m.Inc(mInboundTCPBadSyn)
		return &proto.OfferReply{Result: proto.CodeMalformed}
	}
	if a.inject == nil {
		a.m.Inc(mInboundUnsupported)
		return &proto.OfferReply{Result: proto.CodeUnsupportedProto}
	}
	syn.DstPort = to.Port()
	toHost, err := handshake.Packet(m.Flow.Remote.Addr(), to.Addr(), syn)
	if err != nil {
		a.m.Inc(mInboundTCPBadSyn)
		return &proto.OfferReply{Result: proto.CodeMalformed}
	}
	a.mu.Lock()
	if a.hostWaits >= maxHostWaits {
		a.m.Inc(mInboundTCPPendingFull)
		a.mu.Unlock()
		return &proto.OfferReply{Result: proto.CodeNoResources}
	}
	a.hostWaits++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.hostWaits--
		a.mu.Unlock()
	}()
	c, err := a.takeInbound(m.Flow, session.TCP, m.Relay, 0)
	if err != nil {
		a.m.Inc(mInboundTCPNotTaken) // no carrier port, or the flow exists
		a.log.Warn("inbound flow not taken", "flow", m.Flow, "err", err)
		return &proto.OfferReply{Result: proto.CodeNoResources}
	}
	a.claimRelayPort(c)
	if to.Addr().Is4() {
		a.nat.inbound(m.Flow, to)
	}
	h := &tcpInbound{flow: m.Flow, carrier: c, syn: syn, answered: make(chan struct{})}
	a.mu.Lock()
	a.handshakes[m.Flow] = h
	a.byEdgePort[c.Edge.Port()] = h
	a.mu.Unlock()

	answered := false
	for _, wait := range hostAnswerSchedule {
		if err := a.inject(toHost); err != nil {
			a.m.Inc(mHandshakeSendFailed)
		}
		t := time.NewTimer(wait)
		select {
		case <-h.answered:
			answered = true
		case <-t.C:
		}
		t.Stop()
		if answered {
			break
		}
	}
	a.mu.Lock()
	reset, hostSA := h.reset, h.hostSA
	a.mu.Unlock()
	switch {
	case !answered:
		a.m.Inc(mInboundTCPHostSilent)
		a.drop(m.Flow, c)
		return &proto.OfferReply{Result: proto.CodeTimeout}
	case reset:
		// Nothing listens there: the relay resets the remote's connect.
		a.m.Inc(mInboundTCPHostReset)
		a.drop(m.Flow, c)
		return &proto.OfferReply{Result: proto.CodeClosed}
	}
	token := proto.BindToken(hostSA.Seq)
	a.mu.Lock()
	a.tokens[m.Flow] = token
	a.mu.Unlock()
	go a.sendCarrierSYN(h)
	return &proto.OfferReply{EdgePort: c.Edge.Port(), Token: token}
}

// sendCarrierSYN sends the carrier SYN with the offer's reply (the relay
// keeps one that overtakes the reply), and again until the relay's
// SYN/ACK comes: a lost SYN is sent again with the same ISN (the CGNAT
// takes it as the same connection's).
func (a *agent) sendCarrierSYN(h *tcpInbound) {
	start := time.Now()
	for _, at := range carrierSYNSchedule {
		time.Sleep(time.Until(start.Add(at)))
		a.mu.Lock()
		pkt, stop := h.carrierSYN, h.done || a.handshakes[h.flow] != h
		a.mu.Unlock()
		if stop {
			return
		}
		a.sendSegment(pkt, mHandshakeCarrierSynSent)
	}
}

// sendComplete sends the completing ACK again until the relay says the
// carrier is bound, which it does on that ACK.
func (a *agent) sendComplete(h *tcpInbound) {
	start := time.Now()
	for _, at := range completeSchedule {
		time.Sleep(time.Until(start.Add(at)))
		if e, ok := a.flows.Get(h.flow); !ok || e.Carrier.Public.IsValid() {
			return
		}
		a.mu.Lock()
		pkt := h.ack
		a.mu.Unlock()
		a.sendSegment(pkt, mHandshakeAckSentAgain)
	}
}

func (a *agent) sendSegment(pkt []byte, counter metrics.Counter) {
	if err := a.inject(pkt); err != nil {
		a.m.Inc(mHandshakeSendFailed)
		return
	}
	a.m.Inc(counter)
}

// handshakeLAN takes a LAN miss of flow f if the flow is in its
// handshake; it reports false for a miss the ordinary path sends on.
func (a *agent) handshakeLAN(f session.Flow, frame []byte) bool {
	a.mu.Lock()
	h := a.handshakes[f]
	a.mu.Unlock()
	if h == nil {
		return false
	}
	_, _, seg, err := handshake.Frame(frame)
	if err != nil {
		a.m.Inc(mHandshakeUnreadable)
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	first := h.carrierSYN == nil && !h.reset
	switch {
	case h.done && seg.Flags&handshake.SYN == 0:
		if !h.outIn {
			// The host's first segment after the handshake: from now on
			// the datapath carries its side too.
			if err := a.putOut(f, h.carrier); err != nil {
				a.m.Inc(mHandshakeMapFailed)
				return true
			}
			h.outIn = true
		}
		return false
	case h.done:
		a.m.Inc(mHandshakeHostSynackLate) // the remote's ACK is on its way through the relay
	case seg.Flags&handshake.RST != 0 && first:
		h.reset = true
		close(h.answered)
	case handshake.Answers(seg, h.syn) && first:
		h.hostSA = seg
		pkt, err := handshake.Packet(h.carrier.Edge.Addr(), h.carrier.Relay.Addr(), handshake.CarrierSYN(seg, h.carrier.Edge.Port(), h.carrier.Relay.Port()))
		if err != nil {
			a.m.Inc(mHandshakeBuildFailed)
			return true
		}
		h.carrierSYN = pkt
		close(h.answered)
	case handshake.Answers(seg, h.syn) && seg.Seq == h.hostSA.Seq:
		// The host sends its SYN/ACK again: so does the carrier, at once.
		a.m.Inc(mHandshakeHostSynackAgain)
		if err := a.inject(h.carrierSYN); err != nil {
			a.m.Inc(mHandshakeSendFailed)
		}
	default:
		a.m.Inc(mHandshakeHostUnexpected)
	}
	return true
}

// handshakeWAN takes a WAN miss that belongs to a carrier in its
// handshake: the relay's SYN/ACK. It reports false for any other miss.
func (a *agent) handshakeWAN(frame []byte) bool {
	src, _, seg, err := handshake.Frame(frame)
	if err != nil {
		return false
	}
	a.mu.Lock()
	h := a.byEdgePort[seg.DstPort]
	if h == nil || src != h.carrier.Relay.Addr() || seg.SrcPort != h.carrier.Relay.Port() {
		a.mu.Unlock()
		return false
	}
	switch {
	case h.carrierSYN == nil || !handshake.IsRelaySynAck(seg, h.syn, h.hostSA):
		a.m.Inc(mHandshakeRelayUnexpected)
		a.mu.Unlock()
		return true
	case h.done:
		a.m.Inc(mHandshakeRelaySynackAgain) // our ACK was lost
		pkt := h.ack
		a.mu.Unlock()
		a.sendSegment(pkt, mHandshakeAckSentAgain)
		return true
	}
	ack, err := handshake.Packet(h.carrier.Edge.Addr(), h.carrier.Relay.Addr(),
		handshake.CompletingACK(h.syn, h.hostSA, h.carrier.Edge.Port(), h.carrier.Relay.Port()))
	if err != nil {
		a.m.Inc(mHandshakeBuildFailed)
		a.mu.Unlock()
		return true
	}
	h.ack, h.done = ack, true
	a.mu.Unlock()
	// The carrier-to-host entry goes in before the ACK leaves: the relay
	// releases the remote's segments only when the ACK reaches it.
	if err := a.putBack(h.flow, h.carrier); err != nil {
		a.m.Inc(mHandshakeMapFailed)
		a.log.Warn("inbound flow not mapped", "flow", h.flow, "err", err)
		a.Close(h.flow, proto.CodeInternal)
		return true
	}
	// Transitory, not established, until the remote proves it saw the
	// host's SYN/ACK (inboundquota.go): a spoofed SYN's flow must not
	// hold its ports for the established timeout.
	if err := a.flows.Update(h.flow, h.carrier, flows.StateTransitory); err != nil {
		a.log.Warn("inbound flow", "flow", h.flow, "err", err)
	}
	a.inq.setHalfOpen(h.flow)
	a.note(h.flow, h.carrier)
	a.sendSegment(ack, mHandshakeCompleted)
	go a.sendComplete(h)
	return true
}

// putBack and putOut install one of an inbound TCP flow's two entries
// each; the agent running without a datapath (tests) installs none.
func (a *agent) putBack(f session.Flow, c session.Carrier) error {
	if a.dp == nil {
		return nil
	}
	_, back, err := a.edgePair(f, c)
	if err != nil {
		return err
	}
	return a.dp.XDP.Put(back.Key, back.Entry)
}

func (a *agent) putOut(f session.Flow, c session.Carrier) error {
	if a.dp == nil {
		return nil
	}
	out, _, err := a.edgePair(f, c)
	if err != nil {
		return err
	}
	return a.dp.XDP.Put(out.Key, out.Entry)
}

// forgetHandshake drops a flow's handshake state; a.mu held.
func (a *agent) forgetHandshake(f session.Flow) {
	if h, ok := a.handshakes[f]; ok {
		delete(a.handshakes, f)
		if a.byEdgePort[h.carrier.Edge.Port()] == h {
			delete(a.byEdgePort, h.carrier.Edge.Port())
		}
	}
}
