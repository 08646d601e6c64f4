package relay

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/handshake"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
)

// quotaCarriers is a relay with one site behind public, its carrier
// ports 20000-20015, and the inbound bounds given.
func quotaCarriers(t *testing.T, b config.InboundBounds) (*agent, netip.Addr) {
	t.Helper()
	public := netip.MustParseAddr("198.51.100.2")
	s := &Settings{
		Addresses:    []netip.Addr{netip.MustParseAddr("198.51.100.6")},
		CarrierPorts: config.PortRange{First: 20000, Last: 20015},
		Timers:       config.Timers{UDP: 2 * time.Minute, TCPEstablished: 124 * time.Minute, TCPTransitory: 4 * time.Minute, ICMP: time.Minute},
		Sites:        []Site{{ID: "home", Prefix: netip.MustParsePrefix("2001:db8:5::/56"), MaxFlows: 1000}},
		Inbound:      b,
	}
	c, err := newAgent(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c, public
}

func inFlowTo(proto session.Proto, port uint16, remote string) session.Flow {
	return session.Flow{Proto: proto, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), port),
		Remote: netip.MustParseAddrPort(remote)}
}

// TestInboundQuota: the relay offers a site no more inbound flows at
// once than its per-site quota, and no more from one remote (a /64)
// than the per-remote quota; each refusal is named; a flow that ends
// gives its place back.
func TestInboundQuota(t *testing.T) {
	c, _ := quotaCarriers(t, config.InboundBounds{PerSite: 5, PerRemote: 3})
	now := time.Unix(1e9, 0)
	q := &c.inb.quota
	var flows []session.Flow
	for i := range 3 {
		f := inFlowTo(session.UDP, uint16(1000+i), "[2001:db8:6::2]:53")
		if why := q.admit(f, "home", now); why != "" {
			t.Fatalf("flow %d of remote A: refused %s", i+1, why)
		}
		flows = append(flows, f)
	}
	// Another address of the same /64 is the same remote.
	if why := q.admit(inFlowTo(session.UDP, 1003, "[2001:db8:6::99]:53"), "home", now); why != "inbound-remote-quota" {
		t.Fatalf("fourth flow of remote A's /64: %q, want inbound-remote-quota", why)
	}
	for i := range 2 {
		if why := q.admit(inFlowTo(session.UDP, uint16(2000+i), "192.0.2.7:53"), "home", now); why != "" {
			t.Fatalf("flow %d of remote B: refused %s", i+1, why)
		}
	}
	if why := q.admit(inFlowTo(session.UDP, 3000, "192.0.2.8:53"), "home", now); why != "inbound-site-quota" {
		t.Fatalf("sixth flow of the site: %q, want inbound-site-quota", why)
	}
	if why := q.admit(flows[0], "home", now); why != "" {
		t.Errorf("a flow counted already, offered again: %q", why)
	}
	q.forget(flows[0])
	if why := q.admit(inFlowTo(session.UDP, 1004, "[2001:db8:6::2]:53"), "home", now); why != "" {
		t.Errorf("after one of remote A's flows ended: %q", why)
	}
	if q.bySite["home"] != 5 || len(q.flows) != 5 {
		t.Errorf("site counts %d flows, map %d; want 5", q.bySite["home"], len(q.flows))
	}
}

// TestInboundQuotaOnPath: the quota is applied where the relay decides
// to offer (inbound), before the edge is asked, and counted under its
// name; an offer counts from the moment it is made, and one the edge
// refused gives its place back.
func TestInboundQuotaOnPath(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeNoResources), hold: make(chan struct{})}
	c, _ := inboundCarriers(t, e)
	c.inb.quota.limits = config.InboundBounds{PerRemote: 1}
	ctx := context.Background()
	k1, _ := udpTo("2001:db8:5::10", 7000)
	k2, _ := udpTo("2001:db8:5::10", 7001)
	c.inbound(ctx, k1, []byte("first"))
	c.inbound(ctx, k2, []byte("second, same remote"))
	if got := c.countOf("inbound-remote-quota"); got != 1 {
		t.Fatalf("inbound-remote-quota %d, want 1 (counts %v)", got, c.m.Snapshot())
	}
	close(e.hold)
	waitIdle(t, c)
	c.inbound(ctx, k2, []byte("second again"))
	waitIdle(t, c)
	if got := e.offered(); got != 2 {
		t.Errorf("offers %d, want 2 (the first, and the second once the first was refused)", got)
	}
	c.inb.mu.Lock()
	left := len(c.inb.quota.flows)
	c.inb.mu.Unlock()
	if left != 0 {
		t.Errorf("refused offers still count: %d", left)
	}
}

// TestSweepInboundProof: at the relay, an inbound UDP flow its LAN host
// never answered ends after unanswered_udp (30 s, seen at the next
// sweep), whatever the remote sends; an answered one lives its UDP
// timeout. An inbound TCP flow whose remote never acknowledged the
// host's SYN/ACK (backIn unset) ends after the transitory timeout and
// grace, not the established one it was offered with; one acknowledged
// stays.
func TestSweepInboundProof(t *testing.T) {
	c, public := quotaCarriers(t, config.InboundBounds{})
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }
	fromRemote := map[session.Flow]uint64{}
	answered := map[session.Flow]bool{}
	c.activity = func(f session.Flow, _ session.Carrier) (slowpath.Activity, bool) {
		a := slowpath.Activity{Back: fromRemote[f]}
		if answered[f] {
			a.Out = 1
		}
		return a, true
	}
	add := func(f session.Flow, backIn bool) {
		c.inb.mu.Lock()
		why := c.inb.quota.admit(f, "home", now)
		c.inb.mu.Unlock()
		if why != "" {
			t.Fatal(why)
		}
		c.flows.mu.Lock()
		defer c.flows.mu.Unlock()
		lease, err := c.ports.GrantInbound("home", public, f.Proto)
		if err != nil {
			t.Fatal(err)
		}
		c.add(f, &carrier{site: "home", lease: lease, inbound: true, public: netip.AddrPortFrom(public, 40000+f.Site.Port()),
			lifetime: c.timeouts.For(f.Proto, flows.StateOpen), backIn: backIn})
	}
	silent, talks := inFlowTo(session.UDP, 1, "[2001:db8:6::2]:53"), inFlowTo(session.UDP, 2, "[2001:db8:6::2]:53")
	halfOpen, acked := inFlowTo(session.TCP, 3, "[2001:db8:6::2]:5000"), inFlowTo(session.TCP, 4, "[2001:db8:6::2]:5001")
	add(silent, false)
	add(talks, false)
	add(halfOpen, false)
	add(acked, true)
	answered[talks] = true
	has := func(f session.Flow) bool {
		c.flows.mu.Lock()
		defer c.flows.mu.Unlock()
		_, ok := c.flows.lookup(f)
		return ok
	}
	step := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); {
			now = now.Add(expireEvery)
			fromRemote[silent]++ // the remote keeps sending: it proves nothing
			fromRemote[talks]++
			c.sweep()
		}
	}
	step(20 * time.Second)
	if !has(silent) {
		t.Fatal("the unanswered UDP flow went before 30 s")
	}
	step(20 * time.Second)
	if has(silent) || !has(talks) {
		t.Fatalf("after 40 s: unanswered %v answered %v; want false true", has(silent), has(talks))
	}
	if got := c.m.Snapshot()["inbound-unanswered"]; got != 1 {
		t.Errorf("inbound-unanswered %d, want 1", got)
	}
	step(4*time.Minute + 40*time.Second) // 5m20s: past the transitory 4 min + 1 min grace
	if has(halfOpen) || !has(acked) {
		t.Errorf("after 5m20s: half-open TCP %v, acknowledged TCP %v; want false true", has(halfOpen), has(acked))
	}
	if got, want := c.ports.HeldInbound("home"), 2; got != want {
		t.Errorf("inbound ports held %d, want %d", got, want)
	}
	if n := len(c.inb.quota.flows); n != 2 {
		t.Errorf("quota counts %d flows, want 2", n)
	}
}

// TestHalfOpenUntilAcked: after the carrier handshake an inbound TCP flow
// stays half-open (transitory idle limit, remote-to-carrier entry not
// in) until a segment of the remote's acknowledges the host's SYN/ACK:
// a RST or an ACK that a spoofer guessed wrong goes to the host but
// proves nothing; the real ACK makes the flow established.
func TestHalfOpenUntilAcked(t *testing.T) {
	c, k := handshakeCarriers(t)
	k.hs, k.public = nil, netip.MustParseAddrPort("198.51.100.2:33333") // the handshake completed, its held packets gone
	delete(c.inb.held, tcpFlow)
	delete(c.inb.done, tcpFlow)
	fk := xlat.Key{Proto: 6, Src: tcpFlow.Remote.Addr(), Dst: tcpFlow.Site.Addr(), SPort: tcpFlow.Remote.Port(), DPort: tcpFlow.Site.Port()}
	from := func(s handshake.Segment) {
		c.inbound(context.Background(), fk, frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), s))
	}
	transitory := c.timeouts.TCPTransitory + expireGrace
	if got := c.idleLimit(tcpFlow, k); got != transitory {
		t.Fatalf("half-open idle limit %v, want the transitory %v", got, transitory)
	}
	for _, s := range []handshake.Segment{
		{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Ack: hostISN + 1 + maxAckAhead, Flags: handshake.ACK}, // a wrong guess
		{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Ack: hostISN, Flags: handshake.ACK},                   // acknowledges less than the SYN/ACK
		{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Flags: handshake.RST},
		{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Ack: hostISN + 1, Flags: handshake.RST | handshake.ACK},
	} {
		from(s)
		if k.backIn || c.idleLimit(tcpFlow, k) != transitory {
			t.Fatalf("segment %+v made the flow established", s)
		}
	}
	if got := c.m.Snapshot()["inbound-tcp-ack-unproven"]; got != 4 {
		t.Errorf("inbound-tcp-ack-unproven %d, want 4", got)
	}
	// The remote's handshake ACK lost, its next segment acknowledges
	// the host's banner too: still proof.
	from(handshake.Segment{SrcPort: 40000, DstPort: 443, Seq: remoteSYN.Seq + 1, Ack: hostISN + 1 + 1200, Flags: handshake.ACK | handshake.PSH})
	if !k.backIn || c.m.Snapshot()["inbound-tcp-acked"] != 1 {
		t.Fatalf("the remote's ACK of the host's data: backIn %v, counts %v", k.backIn, c.m.Snapshot())
	}
	if got := c.idleLimit(tcpFlow, k); got != c.timeouts.TCPEstablished+expireGrace {
		t.Errorf("acknowledged idle limit %v, want the established %v", got, c.timeouts.TCPEstablished+expireGrace)
	}
}

// TestInboundPortShareOnPath: an offer leases its relay port within the
// inbound share of the pool; past it the flow is not offered, counted
// inbound-port-share, and the site's outbound flows still get the rest.
func TestInboundPortShareOnPath(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeNoResources), hold: make(chan struct{})}
	c, _ := inboundCarriers(t, e)
	p, err := ports.NewRelay(ports.RelayConfig{Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.6")}, Ports: ports.Range{First: 20000, Last: 20003}})
	if err != nil {
		t.Fatal(err)
	}
	p.SetSite("home", 100)
	c.ports = p
	ctx := context.Background()
	for i := range 3 {
		k, _ := udpTo(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 5, 15: byte(i + 1)}).String(), uint16(7000+i))
		c.inbound(ctx, k, []byte("x"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.countOf("inbound-port-share") == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if got := c.countOf("inbound-port-share"); got != 1 {
		t.Fatalf("inbound-port-share %d, want 1 (counts %v)", got, c.m.Snapshot())
	}
	if got := e.offered(); got != 2 {
		t.Errorf("%d offers, want the 2 of the share of 4 ports", got)
	}
	for i := range 2 {
		if _, err := c.ports.Grant("home", cgnPublic, session.UDP); err != nil {
			t.Errorf("outbound grant %d with inbound at its share: %v", i+1, err)
		}
	}
	close(e.hold)
	waitIdle(t, c)
}
