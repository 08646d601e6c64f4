package relay

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/handshake"
	"github.com/unmap-dev/unmap/session/xlat"
)

var (
	cgnPublic = netip.MustParseAddr("198.51.100.2")
	tcpFlow   = session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("[2001:db8:5::10]:443"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:40000")}
	remoteSYN = handshake.Segment{SrcPort: 40000, DstPort: 443, Seq: 1000, Flags: handshake.SYN, Window: 64800,
		Options: []byte{2, 4, 0x05, 0xa0, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}}
	hostISN = uint32(5000)
)

func frameOf(t *testing.T, src, dst netip.Addr, s handshake.Segment) []byte {
	t.Helper()
	p, err := handshake.Packet(src, dst, s)
	if err != nil {
		t.Fatal(err)
	}
	if src.Is4() {
		return append([]byte{12: 0x08, 13: 0x00}, p...)
	}
	return append([]byte{12: 0x86, 13: 0xdd}, p...)
}

// decoded is an injected packet read back by gopacket, its TCP checksum
// recomputed and compared.
func decoded(t *testing.T, p []byte) (gopacket.NetworkLayer, *layers.TCP) {
	t.Helper()
	first := layers.LayerTypeIPv6
	if p[0]>>4 == 4 {
		first = layers.LayerTypeIPv4
	}
	pkt := gopacket.NewPacket(p, first, gopacket.Default)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil {
		t.Fatalf("not TCP: %v", pkt)
	}
	re := *tcp
	if err := re.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
		t.Fatal(err)
	}
	if err := gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &re); err != nil {
		t.Fatal(err)
	}
	if re.Checksum != tcp.Checksum {
		t.Errorf("TCP checksum %#04x, gopacket computes %#04x", tcp.Checksum, re.Checksum)
	}
	return pkt.NetworkLayer(), tcp
}

// handshakeCarriers is a relay without a datapath holding one inbound
// TCP flow that the edge accepted with the host's ISN as its token.
func handshakeCarriers(t *testing.T) (*agent, *carrier) {
	t.Helper()
	c := exampleCarriers(t)
	lease, err := c.ports.Grant("home", cgnPublic, session.TCP)
	if err != nil {
		t.Fatal(err)
	}
	k := &carrier{site: "home", lease: lease, edgePort: 61000, token: proto.BindToken(hostISN), inbound: true,
		hs: &tcpHandshake{syn: remoteSYN}}
	c.add(tcpFlow, k)
	c.inb.held[tcpFlow] = [][]byte{}
	c.inb.done[tcpFlow] = make(chan struct{})
	return c, k
}

// TestHandshakeRelay runs the relay's side: bind on the carrier SYN, the
// two SYN/ACKs (again on a resent SYN), strays counted, the completing
// ACK consumed and the flow released.
func TestHandshakeRelay(t *testing.T) {
	c, k := handshakeCarriers(t)
	relay := k.lease.RelayAddr()
	const cport = 33333
	key := func(s handshake.Segment) xlat.Key {
		return xlat.Key{Proto: 6, Src: cgnPublic, Dst: relay.Addr(), SPort: s.SrcPort, DPort: s.DstPort}
	}
	l4 := func(f []byte) []byte { return f[14+20:] }
	var sent [][]byte
	send := func(p []byte) error { sent = append(sent, p); return nil }

	// A first packet that is not the carrier SYN does not bind.
	stray := handshake.Segment{SrcPort: cport, DstPort: relay.Port(), Seq: hostISN + 7, Flags: handshake.SYN}
	if _, err := c.bind(key(stray), l4(frameOf(t, cgnPublic, relay.Addr(), stray)), nil); err != errToken {
		t.Fatalf("stray SYN bound: %v", err)
	}

	// The carrier SYN binds, installs nothing, and is answered twice.
	csyn := handshake.Segment{SrcPort: cport, DstPort: relay.Port(), Seq: hostISN, Flags: handshake.SYN, Window: 64260,
		Options: []byte{2, 4, 0x05, 0xa0, 1, 1, 4, 2, 1, 3, 3, 9}}
	fr := frameOf(t, cgnPublic, relay.Addr(), csyn)
	b, err := c.bind(key(csyn), l4(fr), nil)
	if err != nil || b.hs == nil || b.carrier.Public != netip.AddrPortFrom(cgnPublic, cport) {
		t.Fatalf("carrier SYN: bound %+v, %v", b, err)
	}
	if _, done := c.handshakeSegment(b, fr, send); done || len(sent) != 2 {
		t.Fatalf("after the carrier SYN: done %v, %d sent", done, len(sent))
	}
	ip, tcp := decoded(t, sent[0])
	if ip.NetworkFlow().Src().String() != relay.Addr().String() || ip.NetworkFlow().Dst().String() != cgnPublic.String() ||
		uint16(tcp.DstPort) != cport || !tcp.SYN || !tcp.ACK || tcp.Seq != remoteSYN.Seq || tcp.Ack != hostISN+1 ||
		string(tcp.Contents[20:]) != string(remoteSYN.Options) {
		t.Errorf("SYN/ACK to the CGNAT: %v %+v", ip.NetworkFlow(), tcp)
	}
	ip, tcp = decoded(t, sent[1])
	if ip.NetworkFlow().Src().String() != tcpFlow.Site.Addr().String() || ip.NetworkFlow().Dst().String() != tcpFlow.Remote.Addr().String() ||
		uint16(tcp.SrcPort) != 443 || uint16(tcp.DstPort) != 40000 || !tcp.SYN || !tcp.ACK || tcp.Seq != hostISN ||
		tcp.Ack != remoteSYN.Seq+1 || tcp.Window != csyn.Window || string(tcp.Contents[20:]) != string(csyn.Options) {
		t.Errorf("host's SYN/ACK to the remote: %v %+v", ip.NetworkFlow(), tcp)
	}
	// The carrier SYN again at once (the edge's schedule): not answered,
	// our SYN/ACK may be on its way.
	b, _ = c.bind(key(csyn), l4(fr), nil)
	if _, done := c.handshakeSegment(b, fr, send); done || len(sent) != 2 {
		t.Errorf("early carrier SYN: done %v, %d sent", done, len(sent))
	}
	// Again later (our SYN/ACK lost): both go again.
	k.hs.answered = k.hs.answered.Add(-synAckEvery)
	if _, done := c.handshakeSegment(b, fr, send); done || len(sent) != 4 {
		t.Errorf("resent carrier SYN: done %v, %d sent", done, len(sent))
	}
	// Another host behind the CGNAT, on another port, cannot take it.
	other := csyn
	other.SrcPort = cport + 1
	if _, err := c.bind(key(other), l4(frameOf(t, cgnPublic, relay.Addr(), other)), nil); err != errBound {
		t.Errorf("carrier taken from another port: %v", err)
	}
	// An ACK with other numbers is not the completing one.
	wrong := handshake.Segment{SrcPort: cport, DstPort: relay.Port(), Seq: hostISN + 1, Ack: remoteSYN.Seq + 2, Flags: handshake.ACK}
	b, _ = c.bind(key(wrong), l4(frameOf(t, cgnPublic, relay.Addr(), wrong)), nil)
	if _, done := c.handshakeSegment(b, frameOf(t, cgnPublic, relay.Addr(), wrong), send); done {
		t.Error("a wrong ACK completed the handshake")
	}

	// The completing ACK: done, consumed (nothing sent), the held
	// packets released.
	ack := handshake.Segment{SrcPort: cport, DstPort: relay.Port(), Seq: hostISN + 1, Ack: remoteSYN.Seq + 1, Flags: handshake.ACK, Window: 503}
	fr = frameOf(t, cgnPublic, relay.Addr(), ack)
	b, _ = c.bind(key(ack), l4(fr), nil)
	carrier, done := c.handshakeSegment(b, fr, send)
	if !done || len(sent) != 4 || k.hs != nil {
		t.Fatalf("completing ACK: done %v, %d sent, hs %v", done, len(sent), k.hs)
	}
	released := c.inb.done[tcpFlow]
	c.release(nil, tcpFlow, carrier)
	select {
	case <-released:
	default:
		t.Error("held packets not released")
	}
	// The same segment after completion is stale: the entries carry it.
	if _, done := c.handshakeSegment(b, fr, send); done {
		t.Error("a second completion")
	}
	if b, _ := c.bind(key(ack), l4(fr), nil); b.hs != nil {
		t.Error("a completed carrier still in its handshake")
	}
	// After it, the remote's SYN again is answered by the relay (the
	// host's SYN/ACK was lost), not put on the carrier: the
	// remote-to-carrier entry waits for its first segment without SYN.
	if k.synAck == nil || k.backIn {
		t.Fatalf("after the handshake: synAck %d bytes, backIn %v", len(k.synAck), k.backIn)
	}
	fk := xlat.Key{Proto: 6, Src: tcpFlow.Remote.Addr(), Dst: tcpFlow.Site.Addr(), SPort: tcpFlow.Remote.Port(), DPort: tcpFlow.Site.Port()}
	c.inbound(context.Background(), fk, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), remoteSYN))
	if c.m.Snapshot()["inbound-tcp-syn-answered"] != 1 || k.backIn {
		t.Errorf("remote SYN after the handshake: counts %v, backIn %v", c.m.Snapshot(), k.backIn)
	}
	rack := handshake.Segment{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Ack: hostISN + 1, Flags: handshake.ACK}
	c.inbound(context.Background(), fk, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), rack))
	if !k.backIn {
		t.Error("the remote's first plain segment did not put its entry in")
	}
	for name, want := range map[string]uint64{"bind-bad-token": 1, "bound": 1, "bind-already-bound": 1, "handshake-synack-sent": 2,
		"handshake-carrier-syn-again": 1, "handshake-carrier-syn-early": 1, "handshake-unexpected": 1, "handshake-completed": 1, "handshake-stale": 1} {
		if c.m.Snapshot()[name] != want {
			t.Errorf("count %s = %d, want %d (all %v)", name, c.m.Snapshot()[name], want, c.m.Snapshot())
		}
	}
}

// TestInboundTCPHolds: during the handshake the remote's SYN again is
// dropped (counted), its other segments held; a segment that is not a
// SYN, for no flow, is counted and offers nothing.
func TestInboundTCPHolds(t *testing.T) {
	c, _ := handshakeCarriers(t)
	k := xlat.Key{Proto: 6, Src: tcpFlow.Remote.Addr(), Dst: tcpFlow.Site.Addr(), SPort: tcpFlow.Remote.Port(), DPort: tcpFlow.Site.Port()}
	c.inbound(context.Background(), k, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), remoteSYN))
	ack := handshake.Segment{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Ack: hostISN + 1, Flags: handshake.ACK}
	c.inbound(context.Background(), k, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), ack))
	if len(c.inb.held[tcpFlow]) != 1 || c.m.Snapshot()["inbound-tcp-syn-again"] != 1 {
		t.Errorf("held %d, counts %v", len(c.inb.held[tcpFlow]), c.m.Snapshot())
	}
	other := k
	other.SPort = 40001
	ack.SrcPort = 40001
	c.inbound(context.Background(), other, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), ack))
	if c.m.Snapshot()["inbound-tcp-not-syn"] != 1 || len(c.inb.held) != 1 {
		t.Errorf("a lone ACK: counts %v, %d flows held", c.m.Snapshot(), len(c.inb.held))
	}
	// A SYN for a site with no session is counted, not offered.
	syn := remoteSYN
	syn.SrcPort = 40001
	c.inbound(context.Background(), other, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), syn))
	if c.m.Snapshot()["inbound-no-session"] != 1 || len(c.inb.held) != 1 {
		t.Errorf("no session: counts %v, %d flows held", c.m.Snapshot(), len(c.inb.held))
	}
}

// TestHandshakeRelayGiveUp: a handshake that does not complete in time
// leaves no port, flow or lease index behind, and a later carrier SYN
// binds nothing.
func TestHandshakeRelayGiveUp(t *testing.T) {
	c, k := handshakeCarriers(t)
	before := c.ports.Stats().InUse
	c.giveUp(nil, tcpFlow, k)
	c.dropFlow(tcpFlow, &remoteSYN, mInboundNotOpened, mInboundTCPNotOpened)
	if c.flows.len() != 0 || len(c.flows.byLease) != 0 || len(c.inb.held) != 0 || len(c.inb.done) != 0 {
		t.Errorf("left behind: flows %v, leases %v, held %v, done %v", c.flows.all(), c.flows.byLease, c.inb.held, c.inb.done)
	}
	if got := c.ports.Stats().InUse; got != before-1 {
		t.Errorf("ports in use %d, want %d", got, before-1)
	}
	if c.m.Snapshot()["inbound-tcp-not-opened"] != 1 {
		t.Errorf("counts %v", c.m.Snapshot())
	}
	relay := k.lease.RelayAddr()
	csyn := handshake.Segment{SrcPort: 33333, DstPort: relay.Port(), Seq: hostISN, Flags: handshake.SYN}
	fr := frameOf(t, cgnPublic, relay.Addr(), csyn)
	if _, err := c.bind(xlat.Key{Proto: 6, Src: cgnPublic, Dst: relay.Addr(), SPort: 33333, DPort: relay.Port()}, fr[14+20:], nil); err != errNoCarrier {
		t.Errorf("carrier SYN after giving up: %v", err)
	}
	// Giving up on a flow that was replaced meanwhile leaves the new one.
	c2, k2 := handshakeCarriers(t)
	c2.giveUp(nil, tcpFlow, &carrier{})
	if c2.flows.get(tcpFlow) != k2 {
		t.Error("gave up another offer's flow")
	}
}

// TestInboundTCPHoldsInitialWindow: a TCP flow holds up to 16 segments
// (the remote's initial window) during its handshake, then counts.
func TestInboundTCPHoldsInitialWindow(t *testing.T) {
	c, _ := handshakeCarriers(t)
	k := xlat.Key{Proto: 6, Src: tcpFlow.Remote.Addr(), Dst: tcpFlow.Site.Addr(), SPort: tcpFlow.Remote.Port(), DPort: tcpFlow.Site.Port()}
	seg := handshake.Segment{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Ack: hostISN + 1, Flags: handshake.ACK}
	for range maxHeldTCP + 2 {
		c.inbound(context.Background(), k, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), seg))
	}
	if len(c.inb.held[tcpFlow]) != maxHeldTCP || c.m.Snapshot()["inbound-held-overflow"] != 2 {
		t.Errorf("held %d, counts %v", len(c.inb.held[tcpFlow]), c.m.Snapshot())
	}
}

// TestHoldEarlyCarrierSYN: a carrier SYN that beats the offer's reply is
// held while the offer is out (early.go), and binds when the reply adds
// the carrier; one for a port no offer holds is not.
func TestHoldEarlyCarrierSYN(t *testing.T) {
	c, k := handshakeCarriers(t)
	relay := k.lease.RelayAddr()
	c.remove(tcpFlow, k)
	csyn := handshake.Segment{SrcPort: 33333, DstPort: relay.Port(), Seq: hostISN, Flags: handshake.SYN}
	key := xlat.Key{Proto: 6, Src: cgnPublic, Dst: relay.Addr(), SPort: 33333, DPort: relay.Port()}
	c.carrierPacket(key, frameOf(t, cgnPublic, relay.Addr(), csyn), true)
	if c.early.count() != 0 || c.m.Snapshot()["bind-no-carrier"] != 1 {
		t.Fatalf("a SYN for no offer: %d held, counts %v", c.early.count(), c.m.Snapshot())
	}
	lease, err := c.ports.Grant("home", cgnPublic, session.TCP)
	if err != nil {
		t.Fatal(err)
	}
	lk := leaseKey{lease.Key, lease.Port}
	c.early.offered(lk, true, c.now())
	csyn.DstPort, key.DPort = lease.Port, lease.Port
	c.carrierPacket(key, frameOf(t, cgnPublic, relay.Addr(), csyn), true)
	if c.early.count() != 1 || c.m.Snapshot()["early-held"] != 1 {
		t.Fatalf("early SYN: %d held, counts %v", c.early.count(), c.m.Snapshot())
	}
	k2 := &carrier{site: "home", lease: lease, token: proto.BindToken(hostISN), inbound: true, hs: &tcpHandshake{syn: remoteSYN}}
	c.flows.mu.Lock()
	c.add(tcpFlow, k2)
	early := c.early.take(lk, c.now())
	c.flows.mu.Unlock()
	if len(early) != 1 {
		t.Fatalf("%d packets taken, want 1", len(early))
	}
	c.carrierPacket(early[0].key, early[0].frame, true)
	if k2.public != netip.AddrPortFrom(cgnPublic, 33333) {
		t.Errorf("the early SYN did not bind: %v", k2.public)
	}
}
