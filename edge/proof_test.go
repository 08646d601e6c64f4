package edge

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/xlat"
)

// TestBindTokenUnpredictable: a UDP carrier's token is a fresh secret,
// not a function of the flow's first packet (protocol 1 hashed the
// payload, which a host behind the same CGNAT could predict); a TCP
// carrier's is the SYN's sequence number, which the carrier keeps.
func TestBindTokenUnpredictable(t *testing.T) {
	empty := make([]byte, 8) // an empty datagram's UDP header
	a, b := bindToken(session.UDP, empty), bindToken(session.UDP, empty)
	if a == 0 || b == 0 || a == b {
		t.Errorf("two flows with the same first datagram got tokens %#x and %#x", a, b)
	}
	syn := make([]byte, 20)
	syn[4], syn[5], syn[6], syn[7] = 0xde, 0xad, 0xbe, 0xef
	if tok := bindToken(session.TCP, syn); tok != 0xdeadbeef {
		t.Errorf("tcp token %#x, want the ISN", tok)
	}
}

// TestProofsUntilBound: a new UDP carrier's proof (a token keepalive
// with the flow's secret, from E to R, TTL 64) goes at once and again on
// the schedule, and no more once the relay says the carrier is bound.
func TestProofsUntilBound(t *testing.T) {
	old := proofSchedule
	// The third proof is due 600 ms after the second: the margin in
	// which Bound below must land, even on a loaded machine (30 ms
	// flaked once).
	proofSchedule = []time.Duration{0, 30 * time.Millisecond, 630 * time.Millisecond, 900 * time.Millisecond}
	defer func() { proofSchedule = old }()
	a, sent := handshakeAgent(t)
	f := session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:5000"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	relay := netip.MustParseAddrPort("198.51.100.6:20001")
	token := proto.BindToken(session.NewSecret())
	c, err := a.take(f, session.UDP, relay, token)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.flows.Update(f, c, flows.StateOpen); err != nil {
		t.Fatal(err)
	}
	a.proveFirst(f, c, token)
	for i := range 2 {
		select {
		case p := <-sent:
			checkProof(t, p, c, token)
		case <-time.After(time.Second):
			t.Fatalf("proof %d not sent", i)
		}
	}
	a.Bound(&proto.CarrierBound{Flow: f, Public: netip.MustParseAddrPort("198.51.100.2:40000")})
	select {
	case p := <-sent:
		t.Errorf("a proof after the carrier was bound: %x", p)
	case <-time.After(time.Second): // past the whole schedule
	}
	if n := a.Counts()["proof-sent"]; n != 2 {
		t.Errorf("proof-sent %d, want 2", n)
	}
}

// TestProofsStopWhenFlowGoes: a flow closed before its carrier was bound
// gets no more proofs.
func TestProofsStopWhenFlowGoes(t *testing.T) {
	old := proofSchedule
	proofSchedule = []time.Duration{0, 30 * time.Millisecond, 60 * time.Millisecond}
	defer func() { proofSchedule = old }()
	a, sent := handshakeAgent(t)
	f := session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:5001"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	c, err := a.take(f, session.UDP, netip.MustParseAddrPort("198.51.100.6:20002"), 7)
	if err != nil {
		t.Fatal(err)
	}
	a.proveFirst(f, c, 7)
	<-sent
	a.drop(f, c)
	select {
	case p := <-sent:
		t.Errorf("a proof after the flow went: %x", p)
	case <-time.After(200 * time.Millisecond):
	}
	// TCP carriers are bound by their SYN: no proof.
	ft := f
	ft.Proto = session.TCP
	ct, err := a.take(ft, session.TCP, netip.MustParseAddrPort("198.51.100.6:20003"), 9)
	if err != nil {
		t.Fatal(err)
	}
	a.proveFirst(ft, ct, 9)
	select {
	case p := <-sent:
		t.Errorf("a proof for a TCP carrier: %x", p)
	case <-time.After(100 * time.Millisecond):
	}
}

func checkProof(t *testing.T, p []byte, c session.Carrier, token proto.BindToken) {
	t.Helper()
	pkt := gopacket.NewPacket(p, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	u, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || u == nil {
		t.Fatalf("proof is not IPv4 UDP: %x", p)
	}
	if netip.AddrFrom4([4]byte(ip.SrcIP.To4())) != c.Edge.Addr() || uint16(u.SrcPort) != c.Edge.Port() ||
		netip.AddrFrom4([4]byte(ip.DstIP.To4())) != c.Relay.Addr() || uint16(u.DstPort) != c.Relay.Port() {
		t.Errorf("proof %v:%d -> %v:%d, want the carrier %v -> %v", ip.SrcIP, u.SrcPort, ip.DstIP, u.DstPort, c.Edge, c.Relay)
	}
	if ip.TTL != 64 {
		t.Errorf("proof TTL %d, want 64", ip.TTL)
	}
	if !bytes.Equal(u.Payload, xlat.TokenKeepalive(uint64(token))) {
		t.Errorf("proof payload %x, want the token keepalive of %#x", u.Payload, token)
	}
}
