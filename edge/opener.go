package edge

import (
	"crypto/rand"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/unmap-dev/unmap/session"
)

// openerLen is the opener's payload: random bytes whose hash is the
// carrier's bind token, so only the edge that chose them can bind it.
const openerLen = 16

func opener() []byte {
	b := make([]byte, openerLen)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

// openerSchedule is when the opener is sent (as the offer's reply goes),
// until the relay says the carrier is bound: a lost opener is sent
// again. One that overtakes the reply is held by the relay (with
// edge-chooses-r) or sent again.
var openerSchedule = []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, time.Second, 2 * time.Second}

// sendOpener opens an inbound flow's UDP carrier through the CGNAT: a
// datagram from E to R that creates the CGNAT's mapping, which the relay
// binds (by the token) and consumes.
func (a *agent) sendOpener(f session.Flow, c session.Carrier, payload []byte) {
	pkt, err := udp4(c, payload)
	if err != nil {
		a.log.Error("opener", "flow", f, "err", err)
		return
	}
	start := time.Now()
	for _, at := range openerSchedule {
		time.Sleep(time.Until(start.Add(at)))
		if e, ok := a.flows.Get(f); !ok || e.Carrier.Public.IsValid() {
			return // closed, or bound
		}
		if err := a.dp.inj.Packet(pkt); err != nil {
			a.count("opener-send-failed")
			continue
		}
		a.count("opener-sent")
	}
}

// udp4 builds an IPv4 UDP datagram of the carrier, checksums included.
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
