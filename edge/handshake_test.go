package edge

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/handshake"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

var (
	hsWAN    = netip.MustParseAddr("100.64.0.2")
	hsRelay  = netip.MustParseAddrPort("198.51.100.6:20001")
	hsFlow   = session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("[2001:db8:5::10]:443"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:40000")}
	hsSYNOpt = []byte{2, 4, 0x05, 0xa0, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
	hsSYN    = handshake.Segment{SrcPort: 40000, DstPort: 443, Seq: 1000, Flags: handshake.SYN, Window: 64800, Options: hsSYNOpt}
	hostSA   = handshake.Segment{SrcPort: 443, DstPort: 40000, Seq: 5000, Ack: 1001, Flags: handshake.SYN | handshake.ACK,
		Window: 64260, Options: []byte{2, 4, 0x05, 0xa0, 1, 1, 4, 2, 1, 3, 3, 7}}
)

// handshakeAgent is an agent without a datapath whose injected packets
// arrive on the returned channel.
func handshakeAgent(t *testing.T) (*agent, chan []byte) {
	t.Helper()
	a := testAgent(t, "61000-61199")
	sent := make(chan []byte, 32)
	a.inject = func(p []byte) error { sent <- append([]byte(nil), p...); return nil }
	return a, sent
}

func offerOf(t *testing.T) *proto.FlowOffer {
	h, err := hsSYN.Header()
	if err != nil {
		t.Fatal(err)
	}
	return &proto.FlowOffer{Flow: hsFlow, CarrierProto: session.TCP, Relay: hsRelay, SYN: h}
}

// frame is p with an Ethernet header, as a miss hands it over.
func frame(t *testing.T, src, dst netip.Addr, s handshake.Segment) []byte {
	t.Helper()
	p, err := handshake.Packet(src, dst, s)
	if err != nil {
		t.Fatal(err)
	}
	eth := []byte{12: 0x86, 13: 0xdd}
	if src.Is4() {
		eth = []byte{12: 0x08, 13: 0x00}
	}
	return append(eth, p...)
}

// next is the next injected packet, decoded by gopacket with its
// checksums verified.
func next(t *testing.T, sent chan []byte) (gopacket.Packet, *layers.TCP) {
	t.Helper()
	select {
	case p := <-sent:
		first := layers.LayerTypeIPv6
		if p[0]>>4 == 4 {
			first = layers.LayerTypeIPv4
		}
		pkt := gopacket.NewPacket(p, first, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("injected a packet without TCP: %v", pkt)
		}
		checkTCPChecksum(t, pkt, tcp)
		return pkt, tcp
	case <-time.After(3 * time.Second):
		t.Fatal("nothing injected")
	}
	return nil, nil
}

func checkTCPChecksum(t *testing.T, pkt gopacket.Packet, tcp *layers.TCP) {
	t.Helper()
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
}

func noneSent(t *testing.T, sent chan []byte, what string) {
	t.Helper()
	select {
	case <-sent:
		t.Errorf("%s: a packet was sent", what)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestHandshakeEdge runs the edge's side of the carrier handshake step
// by step, retransmissions and strays included.
func TestHandshakeEdge(t *testing.T) {
	a, sent := handshakeAgent(t)
	replies := make(chan *proto.OfferReply, 1)
	go func() { replies <- a.offerTCP(offerOf(t), hsFlow.Site) }()

	// 1. The remote's SYN goes to the host, from the remote's address.
	pkt, tcp := next(t, sent)
	ip6 := pkt.NetworkLayer().(*layers.IPv6)
	if !ip6.SrcIP.Equal(hsFlow.Remote.Addr().AsSlice()) || !ip6.DstIP.Equal(hsFlow.Site.Addr().AsSlice()) ||
		!tcp.SYN || tcp.ACK || tcp.Seq != hsSYN.Seq || string(tcp.Contents[20:]) != string(hsSYNOpt) {
		t.Fatalf("SYN to the host: %v", pkt)
	}
	// A segment of the flow that is not the answer is counted, not taken.
	if !a.handshakeLAN(hsFlow, frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), handshake.Segment{SrcPort: 443, DstPort: 40000, Seq: 1, Ack: 7, Flags: handshake.SYN | handshake.ACK})) {
		t.Error("a stray SYN/ACK of the flow went the ordinary way")
	}

	// 2. The host's SYN/ACK: the offer is answered with its ISN, and the
	// carrier SYN leaves E for R with that ISN and the host's options.
	if !a.handshakeLAN(hsFlow, frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), hostSA)) {
		t.Fatal("the host's SYN/ACK went the ordinary way")
	}
	r := <-replies
	if r == nil || r.Result != proto.CodeOK || r.Token != proto.BindToken(hostSA.Seq) || r.EdgePort < 61000 || r.EdgePort > 61199 {
		t.Fatalf("offer reply %+v", r)
	}
	pkt, tcp = next(t, sent)
	ip4 := pkt.NetworkLayer().(*layers.IPv4)
	if !ip4.SrcIP.Equal(hsWAN.AsSlice()) || !ip4.DstIP.Equal(hsRelay.Addr().AsSlice()) || uint16(tcp.SrcPort) != r.EdgePort ||
		uint16(tcp.DstPort) != hsRelay.Port() || !tcp.SYN || tcp.ACK || tcp.Seq != hostSA.Seq || tcp.Window != hostSA.Window ||
		string(tcp.Contents[20:]) != string(hostSA.Options) {
		t.Fatalf("carrier SYN: %v", pkt)
	}
	if e, _ := a.flows.Get(hsFlow); e.State != flows.StateOpening {
		t.Errorf("flow %v before the relay answered", e.State)
	}

	// 3. The host sends its SYN/ACK again: the carrier SYN goes again at once.
	a.handshakeLAN(hsFlow, frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), hostSA))
	if _, tcp = next(t, sent); !tcp.SYN || tcp.ACK || tcp.Seq != hostSA.Seq {
		t.Errorf("resent carrier SYN: %+v", tcp)
	}

	// 4. A SYN/ACK on the carrier that does not answer ours is no one's.
	bad := handshake.Segment{SrcPort: hsRelay.Port(), DstPort: r.EdgePort, Seq: hsSYN.Seq, Ack: hostSA.Seq + 2, Flags: handshake.SYN | handshake.ACK}
	if !a.handshakeWAN(frame(t, hsRelay.Addr(), hsWAN, bad)) {
		t.Error("a stray SYN/ACK to the carrier port was not taken")
	}
	// Nor is one from another address to the carrier port.
	if a.handshakeWAN(frame(t, netip.MustParseAddr("203.0.113.9"), hsWAN, bad)) {
		t.Error("a segment from elsewhere was taken as the relay's")
	}

	// 5. The relay's SYN/ACK: the completing ACK goes E→R with the flow's numbers.
	rsa := handshake.Segment{SrcPort: hsRelay.Port(), DstPort: r.EdgePort, Seq: hsSYN.Seq, Ack: hostSA.Seq + 1,
		Flags: handshake.SYN | handshake.ACK, Window: hsSYN.Window, Options: hsSYNOpt}
	// Drain resends of the carrier SYN still scheduled.
	for len(sent) > 0 {
		<-sent
	}
	if !a.handshakeWAN(frame(t, hsRelay.Addr(), hsWAN, rsa)) {
		t.Fatal("the relay's SYN/ACK was not taken")
	}
	var ack *layers.TCP
	for ack == nil {
		if _, tcp = next(t, sent); !tcp.SYN {
			ack = tcp
		}
	}
	if !ack.ACK || ack.SYN || ack.Seq != hostSA.Seq+1 || ack.Ack != hsSYN.Seq+1 || ack.Window != hostSA.Window>>7 {
		t.Errorf("completing ACK %+v", ack)
	}
	// Half-open until both ends sent past the handshake: transitory.
	if e, _ := a.flows.Get(hsFlow); e.State != flows.StateTransitory {
		t.Errorf("flow %v after the handshake, want transitory", e.State)
	}

	// 6. After it: the host's SYN/ACK again is dropped (never onto the
	// carrier as a SYN/ACK); its first plain segment goes the ordinary
	// way; the relay's SYN/ACK again is answered with the ACK again.
	for len(sent) > 0 {
		<-sent
	}
	if !a.handshakeLAN(hsFlow, frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), hostSA)) {
		t.Error("a late SYN/ACK of the host went the ordinary way")
	}
	plain := handshake.Segment{SrcPort: 443, DstPort: 40000, Seq: hostSA.Seq + 1, Ack: hsSYN.Seq + 1, Flags: handshake.ACK}
	if a.handshakeLAN(hsFlow, frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), plain)) {
		t.Error("the host's first plain segment was held back")
	}
	a.handshakeWAN(frame(t, hsRelay.Addr(), hsWAN, rsa))
	if _, tcp = next(t, sent); tcp.SYN || tcp.Seq != hostSA.Seq+1 {
		t.Errorf("resent ACK %+v", tcp)
	}

	got := a.Counts()
	for name, want := range map[string]uint64{"handshake-host-unexpected": 1, "handshake-host-synack-again": 1,
		"handshake-relay-unexpected": 1, "handshake-completed": 1, "handshake-host-synack-late": 1, "handshake-relay-synack-again": 1} {
		if got[name] != want {
			t.Errorf("count %s = %d, want %d (all: %v)", name, got[name], want, got)
		}
	}

	// Closing the flow forgets the handshake and frees the port.
	a.Closed(&proto.FlowClose{Flow: hsFlow})
	if n, m := handshakesLeft(a); n != 0 || m != 0 {
		t.Errorf("handshake state left: %d by flow, %d by port", n, m)
	}
	if a.handshakeWAN(frame(t, hsRelay.Addr(), hsWAN, rsa)) {
		t.Error("a closed flow's carrier still taken")
	}
}

// TestHandshakeEdgeRefusals: a host that resets, or never answers, ends
// the offer refused with nothing left behind.
func TestHandshakeEdgeRefusals(t *testing.T) {
	defer func(s []time.Duration) { hostAnswerSchedule = s }(hostAnswerSchedule)
	hostAnswerSchedule = []time.Duration{50 * time.Millisecond, 50 * time.Millisecond}
	for _, c := range []struct {
		name   string
		answer *handshake.Segment
		code   proto.Code
		count  string
		synsTo int // SYNs the host gets
	}{
		{"reset", &handshake.Segment{SrcPort: 443, DstPort: 40000, Ack: 1001, Flags: handshake.RST | handshake.ACK}, proto.CodeClosed, "inbound-tcp-host-reset", 1},
		{"silent", nil, proto.CodeTimeout, "inbound-tcp-host-silent", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, sent := handshakeAgent(t)
			replies := make(chan *proto.OfferReply, 1)
			go func() { replies <- a.offerTCP(offerOf(t), hsFlow.Site) }()
			next(t, sent)
			if c.answer != nil {
				a.handshakeLAN(hsFlow, frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), *c.answer))
			}
			r := <-replies
			if r == nil || r.Result != c.code {
				t.Fatalf("reply %+v, want %v", r, c.code)
			}
			for range c.synsTo - 1 {
				next(t, sent)
			}
			noneSent(t, sent, "after the refusal")
			if n, m := handshakesLeft(a); n != 0 || m != 0 {
				t.Error("the refused flow's handshake was left behind")
			}
			if _, ok := a.flows.Get(hsFlow); ok {
				t.Error("the refused flow was left behind")
			}
			if a.ports.InUse() != 0 {
				t.Errorf("%d ports in use after the refusal", a.ports.InUse())
			}
			if a.Counts()[c.count] != 1 {
				t.Errorf("counts %v, want %s", a.Counts(), c.count)
			}
		})
	}
}

func handshakesLeft(a *agent) (byFlow, byPort int) {
	a.hs.mu.Lock()
	defer a.hs.mu.Unlock()
	return len(a.hs.byFlow), len(a.hs.byEdgePort)
}

// TestLateAnswerOpensNothing: the host's SYN/ACK or RST for a flow the
// edge does not have (its inbound handshake given up) is counted, not
// opened as an outbound flow; a SYN is.
func TestLateAnswerOpensNothing(t *testing.T) {
	a, _ := handshakeAgent(t)
	a.sess.grant = &proto.Welcome{Prefix: netip.MustParsePrefix("2001:db8:5::/56")}
	dp := &datapath{Datapath: &slowpath.Datapath{Cfg: xlat.Config{CarrierAddr: hsWAN, PortLo: 61000, PortHi: 61099}}}
	for _, c := range []struct {
		seg  handshake.Segment
		open bool
	}{
		{hostSA, false},
		{handshake.Segment{SrcPort: 443, DstPort: 40000, Ack: 1001, Flags: handshake.RST | handshake.ACK}, false},
		{handshake.Segment{SrcPort: 443, DstPort: 40000, Seq: 9, Flags: handshake.SYN}, true},
	} {
		fr := frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), c.seg)
		if _, _, _, _, ok := a.classify(dp, xdp.Miss{Role: xlat.RoleEdgeLAN, Data: fr, Len: len(fr)}); ok != c.open {
			t.Errorf("flags %#x: opens %v, want %v", c.seg.Flags, ok, c.open)
		}
	}
	if n := a.Counts()["miss-tcp-answer-no-flow"]; n != 2 {
		t.Errorf("counted %d, want 2", n)
	}
}
