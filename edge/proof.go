package edge

import (
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// A UDP carrier is bound at the relay by a proof: a token keepalive
// (xlat.TokenKeepalive) from E to R carrying the flow's secret bind
// token, which the edge drew at random and told the relay on the control
// channel. Nothing the flow itself carries binds it, so a host behind the
// same CGNAT address that can predict a flow's first datagram (a DNS
// query, an empty datagram) cannot take the carrier; and since proofs are
// sent until the relay says the carrier is bound, losing any one packet,
// the flow's first included, does not leave the carrier unbound. The
// relay holds the flow's packets that come before the proof and consumes
// every proof (it never reaches the remote).

// proofSchedule is when a carrier's proofs go, from the first one (sent
// with the flow's first packet, or as an inbound offer's reply goes)
// until the relay says the carrier is bound: a lost proof is sent again
// within 100 ms, and a few more follow in case those are lost too.
// After it, keepCarriers proves a carrier still unbound every
// unboundProofEvery.
var proofSchedule = []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, time.Second, 2 * time.Second}

// unboundProofEvery is how often keepCarriers proves a UDP carrier the
// relay has not said is bound, once proofSchedule is over.
const unboundProofEvery = 5 * time.Second

// bindsByProof reports whether carriers of protocol p are bound by a
// proof (TCP carriers are bound by their SYN's sequence number; the
// edge opens no ICMP echo carriers: see classify).
func bindsByProof(p session.Proto) bool { return p == session.UDP }

// sendProof sends one proof of c with token; false if it could not.
func (a *agent) sendProof(c session.Carrier, token proto.BindToken) bool {
	if a.inject == nil {
		return false
	}
	pkt, err := udp4(c, xlat.TokenKeepalive(uint64(token)))
	if err == nil {
		err = a.inject(pkt)
	}
	if err != nil {
		a.m.Inc(mProofSendFailed)
		a.log.Debug("proof not sent", "carrier", c, "err", err)
		return false
	}
	a.m.Inc(mProofSent)
	return true
}

// proveFirst sends the first proof of a new UDP carrier at once, before
// the flow's first packets, and the rest of proofSchedule in the
// background.
func (a *agent) proveFirst(f session.Flow, c session.Carrier, token proto.BindToken) {
	if !bindsByProof(c.Proto) || a.inject == nil {
		return
	}
	start := time.Now()
	a.sendProof(c, token)
	go a.proveAgain(f, c, token, start, proofSchedule[1:])
}

// proveAgain sends the proofs of schedule (times after start) while f is
// on carrier c and the relay has not said it is bound.
func (a *agent) proveAgain(f session.Flow, c session.Carrier, token proto.BindToken, start time.Time, schedule []time.Duration) {
	for _, at := range schedule {
		time.Sleep(time.Until(start.Add(at)))
		if !a.unbound(f, c) {
			return // closed, moved to another carrier, or bound
		}
		a.sendProof(c, token)
	}
}

// unbound reports whether f is still on carrier c (same E and R) and the
// relay has not told it bound.
func (a *agent) unbound(f session.Flow, c session.Carrier) bool {
	e, ok := a.flows.Get(f)
	return ok && !e.Carrier.Public.IsValid() && e.Carrier.Edge == c.Edge && e.Carrier.Relay == c.Relay
}

// udp4 builds an IPv4 UDP datagram of the carrier, checksums included.
// It leaves with an ordinary TTL whatever the flow's packets have: a
// traceroute probe that expires before the relay still has its carrier
// bound.
func udp4(c session.Carrier, payload []byte) ([]byte, error) {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment,
		SrcIP: c.Edge.Addr().AsSlice(), DstIP: c.Relay.Addr().AsSlice()}
	u := &layers.UDP{SrcPort: layers.UDPPort(c.Edge.Port()), DstPort: layers.UDPPort(c.Relay.Port())}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, u, gopacket.Payload(payload))
	return buf.Bytes(), err
}
