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
	if !a.hs.wait() {
		a.m.Inc(mInboundTCPPendingFull)
		return &proto.OfferReply{Result: proto.CodeNoResources}
	}
	defer a.hs.unwait()
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
	a.hs.add(h)

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
	reset, hostSA := a.hs.answer(h)
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
	a.binds.set(m.Flow, token)
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
		pkt, stop := a.hs.pendingSYN(h)
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
		a.sendSegment(a.hs.completingACK(h), mHandshakeAckSentAgain)
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
	h := a.hs.lookup(f)
	if h == nil {
		return false
	}
	_, _, seg, err := handshake.Frame(frame)
	if err != nil {
		a.m.Inc(mHandshakeUnreadable)
		return true
	}
	step, pkt := a.hs.hostSegment(h, seg)
	switch step {
	case hostPass:
		return false
	case hostMapOut:
		// The host's first segment after the handshake: from now on the
		// datapath carries its side too.
		if err := a.putOut(f, h.carrier); err != nil {
			a.m.Inc(mHandshakeMapFailed)
			return true
		}
		a.hs.setOutIn(h)
		return false
	case hostLate:
		a.m.Inc(mHandshakeHostSynackLate) // the remote's ACK is on its way through the relay
	case hostAnswered:
	case hostAgain:
		// The host sends its SYN/ACK again: so does the carrier, at once.
		a.m.Inc(mHandshakeHostSynackAgain)
		if err := a.inject(pkt); err != nil {
			a.m.Inc(mHandshakeSendFailed)
		}
	case hostBuildFailed:
		a.m.Inc(mHandshakeBuildFailed)
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
	h, step, ack := a.hs.relaySegment(src, seg)
	switch step {
	case relayNone:
		return false
	case relayUnexpected:
		a.m.Inc(mHandshakeRelayUnexpected)
		return true
	case relayAgain:
		a.m.Inc(mHandshakeRelaySynackAgain) // our ACK was lost
		a.sendSegment(ack, mHandshakeAckSentAgain)
		return true
	case relayBuildFailed:
		a.m.Inc(mHandshakeBuildFailed)
		return true
	}
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
