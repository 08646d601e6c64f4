package edge

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/slowpath"
)

// quotaAgent is an agent without a datapath, granted 2001:db8:5::/56,
// that allows every inbound flow to it, with carrier ports ports and
// the inbound_limits given.
func quotaAgent(t *testing.T, ports string, limits string) *agent {
	t.Helper()
	c := Config{Site: "home", Relay: "127.0.0.1:1", LAN: "lan", WAN: "wan", CarrierPorts: ports, TLS: confTLS(t.TempDir()),
		Inbound: Inbound{Allow: []AllowRule{{Proto: "any", Hosts: "2001:db8:5::/56"}}}}
	if err := decodeLimits(limits, &c); err != nil {
		t.Fatal(err)
	}
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(s, netip.MustParseAddr("100.64.0.2"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.sess.grant, a.sess.up = &proto.Welcome{Prefix: netip.MustParsePrefix("2001:db8:5::/56")}, true
	return a
}

func decodeLimits(s string, c *Config) error {
	_, err := fmt.Sscanf(s, "%d %d %d", &c.InboundLimits.PerSite, &c.InboundLimits.PerRemote, &c.InboundLimits.PortShare)
	return err
}

// udpOffer is an inbound UDP flow from remote to port of a site host.
func udpOffer(remote string, port uint16) *proto.FlowOffer {
	f := session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), port), Remote: netip.MustParseAddrPort(remote)}
	return &proto.FlowOffer{Flow: f, CarrierProto: session.UDP, Relay: netip.MustParseAddrPort("198.51.100.6:20000")}
}

// TestEdgeInboundQuotas: the edge accepts no more inbound flows than
// per_remote from one remote (its /64) and per_site in all, and takes
// their carrier ports within port_share of the range; each refusal is
// counted under its name; the LAN's outbound flows still get the ports
// kept for them; a flow that ends gives its place back.
func TestEdgeInboundQuotas(t *testing.T) {
	a := quotaAgent(t, "61000-61099", "8 3 50")
	accept := func(m *proto.FlowOffer) bool {
		r := a.Offer(m)
		return r != nil && r.Result == proto.CodeOK
	}
	for i := range 3 {
		if !accept(udpOffer("[2001:db8:6::2]:53", uint16(1000+i))) {
			t.Fatalf("flow %d of remote A refused: %v", i+1, a.Counts())
		}
	}
	if accept(udpOffer("[2001:db8:6::77]:53", 1003)) || a.Counts()["inbound-remote-quota"] != 1 {
		t.Fatalf("fourth flow of remote A's /64: accepted or not counted (%v)", a.Counts())
	}
	for i := range 5 {
		if !accept(udpOffer(fmt.Sprintf("192.0.2.%d:53", 10+i), 2000)) {
			t.Fatalf("flow of remote %d refused: %v", i, a.Counts())
		}
	}
	if accept(udpOffer("192.0.2.99:53", 2000)) || a.Counts()["inbound-site-quota"] != 1 {
		t.Fatalf("ninth inbound flow of a site quota of 8: accepted or not counted (%v)", a.Counts())
	}
	f := udpOffer("[2001:db8:6::2]:53", 1000).Flow
	e, _ := a.flows.Get(f)
	a.drop(f, e.Carrier)
	if !accept(udpOffer("[2001:db8:6::2]:53", 1004)) {
		t.Errorf("after one of remote A's flows ended: refused (%v)", a.Counts())
	}
	if a.inq.count() != 8 {
		t.Errorf("%d inbound flows counted, want 8", a.inq.count())
	}

	// The port share: 5 of 100 ports for inbound flows; outbound flows
	// get the others.
	b := quotaAgent(t, "61000-61099", "100 100 5")
	for i := range 5 {
		if !accept2(b, udpOffer(fmt.Sprintf("192.0.2.%d:53", 10+i), 2000)) {
			t.Fatalf("inbound flow %d of a share of 5 refused: %v", i+1, b.Counts())
		}
	}
	if accept2(b, udpOffer("192.0.2.99:53", 2000)) || b.Counts()["inbound-port-share"] != 1 {
		t.Fatalf("sixth inbound flow of a share of 5: accepted or not counted (%v)", b.Counts())
	}
	for i := range 15 {
		out := session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), uint16(3000+i)), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
		if _, err := b.take(out, session.UDP, netip.AddrPort{}, 0); err != nil {
			t.Fatalf("outbound flow %d with inbound at its share: %v", i+1, err)
		}
	}
}

func accept2(a *agent, m *proto.FlowOffer) bool {
	r := a.Offer(m)
	return r != nil && r.Result == proto.CodeOK
}

// TestEdgeInboundProof: at the edge, an inbound UDP flow its LAN host
// never answered is ended after unanswered_udp (seen at the activity
// look after it), whatever the remote sends, and counted; one the host
// answered stays. An inbound TCP flow after its carrier handshake is
// transitory until both the remote and the host sent past it, then
// established; one only the remote's side moved on stays transitory.
func TestEdgeInboundProof(t *testing.T) {
	a := quotaAgent(t, "61000-61099", "0 0 0")
	now := time.Unix(1e9, 0)
	a.inq.now = func() time.Time { return now }
	silent, talks := udpOffer("[2001:db8:6::2]:53", 1000), udpOffer("[2001:db8:6::2]:53", 1001)
	for _, m := range []*proto.FlowOffer{silent, talks} {
		if r := a.Offer(m); r == nil || r.Result != proto.CodeOK {
			t.Fatalf("offer refused: %v", r)
		}
	}
	tcp := func(port uint16) session.Flow {
		return session.Flow{Proto: session.TCP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), port), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:5000")}
	}
	proved, spoofed := tcp(443), tcp(444)
	for _, f := range []session.Flow{proved, spoofed} {
		if _, err := a.takeInbound(f, session.TCP, netip.MustParseAddrPort("198.51.100.6:20001"), 0); err != nil {
			t.Fatal(err)
		}
		// As handshakeWAN leaves it.
		if err := a.flows.Update(f, session.Carrier{Proto: session.TCP}, flows.StateTransitory); err != nil {
			t.Fatal(err)
		}
		a.inq.setHalfOpen(f)
	}
	act := map[session.Flow]slowpath.Activity{}
	a.activity = func(f session.Flow, _ session.Carrier) (slowpath.Activity, bool) { return act[f], true }
	look := func(d time.Duration) {
		now = now.Add(d)
		for _, f := range []session.Flow{silent.Flow, talks.Flow} {
			fa := act[f]
			fa.Back += 3 // the remote keeps sending
			act[f] = fa
		}
		a.touchActive()
	}
	act[talks.Flow] = slowpath.Activity{Out: 1}
	act[proved] = slowpath.Activity{Out: 2, Back: 1}
	act[spoofed] = slowpath.Activity{Back: 1}
	look(slowpath.ActivityEvery)
	if _, ok := a.flows.Get(silent.Flow); !ok {
		t.Fatal("the unanswered flow ended before 30 s")
	}
	look(slowpath.ActivityEvery)
	if _, ok := a.flows.Get(silent.Flow); ok {
		t.Error("the unanswered flow outlived 40 s")
	}
	if _, ok := a.flows.Get(talks.Flow); !ok {
		t.Error("the answered flow ended")
	}
	if e, _ := a.flows.Get(proved); e.State != flows.StateOpen {
		t.Errorf("TCP flow both ends sent on: %v, want open", e.State)
	}
	if e, _ := a.flows.Get(spoofed); e.State != flows.StateTransitory {
		t.Errorf("TCP flow only the remote's side moved on: %v, want transitory", e.State)
	}
	c := a.Counts()
	if c["inbound-unanswered"] != 1 || c["inbound-tcp-established"] != 1 {
		t.Errorf("counts %v", c)
	}
	if a.inq.count() != 3 || a.ports.InboundInUse(session.UDP) != 1 {
		t.Errorf("%d inbound flows counted, %d inbound UDP ports held; want 3, 1", a.inq.count(), a.ports.InboundInUse(session.UDP))
	}
}
