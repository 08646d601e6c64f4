package edge

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
)

func lanFlow(p session.Proto, src, dst string) session.Flow {
	return session.Flow{Proto: p, Site: netip.MustParseAddrPort(src), Remote: netip.MustParseAddrPort(dst)}
}

func TestSiteNAT(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.10")
	n := newSiteNAT()
	if _, err := n.outbound(lanFlow(session.UDP, "192.0.2.2:5000", "198.51.100.10:53")); err == nil {
		t.Fatal("outbound mapped without a grant")
	}
	fw := []Forward{{Proto: session.UDP, Ports: ports.Range{First: 5000, Last: 5001}, To: netip.MustParseAddrPort("192.0.2.3:53")}}
	if err := n.grant(public, ports.Range{First: 4000, Last: 6000}, fw); err != nil {
		t.Fatal(err)
	}

	// Port preservation, unless the port is forwarded or out of the set.
	a, err := n.outbound(lanFlow(session.TCP, "192.0.2.2:5000", "198.51.100.10:80"))
	if err != nil || a.Site != netip.AddrPortFrom(public, 5000) {
		t.Fatalf("tcp 5000 mapped to %v, %v; want %v:5000 (forward is UDP only)", a.Site, err, public)
	}
	b, err := n.outbound(lanFlow(session.UDP, "192.0.2.2:5000", "198.51.100.10:53"))
	if err != nil || b.Site.Port() == 5000 || b.Site.Port() == 5001 || b.Site.Port() < 4000 || b.Site.Port() > 6000 {
		t.Fatalf("udp 5000 mapped to %v, %v: forwarded or outside 4000-6000", b.Site, err)
	}
	c, err := n.outbound(lanFlow(session.UDP, "192.0.2.2:7000", "198.51.100.10:53"))
	if err != nil || c.Site.Port() < 4000 || c.Site.Port() > 6000 {
		t.Fatalf("udp 7000 mapped to %v, %v: outside 4000-6000", c.Site, err)
	}

	// Endpoint-independent: the same private endpoint to another remote
	// keeps its public port; its LAN view is the private endpoint.
	b2, err := n.outbound(lanFlow(session.UDP, "192.0.2.2:5000", "198.51.100.99:123"))
	if err != nil || b2.Site != b.Site {
		t.Fatalf("second flow of one endpoint mapped to %v, want %v", b2.Site, b.Site)
	}
	if got := n.lan(b2); got.Site != netip.MustParseAddrPort("192.0.2.2:5000") {
		t.Errorf("lan view %v", got)
	}
	// Announcing the same flow again takes no second reference.
	if _, err := n.outbound(lanFlow(session.UDP, "192.0.2.2:5000", "198.51.100.99:123")); err != nil {
		t.Fatal(err)
	}
	n.release(b)
	if got, _ := n.outbound(lanFlow(session.UDP, "192.0.2.2:5000", "198.51.100.10:53")); got.Site != b.Site {
		t.Errorf("binding lost while a flow still used it: %v", got.Site)
	}
	n.release(b)
	n.release(b2)
	if len(n.binds) != 2 || len(n.flows) != 2 {
		t.Errorf("after releasing an endpoint's flows: %d bindings, %d flows; want 2 and 2", len(n.binds), len(n.flows))
	}

	// Inbound forwards hold no binding; their LAN view is the target.
	in := lanFlow(session.UDP, "203.0.113.10:5001", "198.51.100.10:999")
	if got := n.inbound(in, netip.MustParseAddrPort("192.0.2.3:54")); got.Site != netip.MustParseAddrPort("192.0.2.3:54") {
		t.Errorf("inbound lan flow %v", got)
	}
	n.release(in)
	n.release(a)
	n.release(c)
	if len(n.binds) != 0 || len(n.flows) != 0 || n.ports.InUse() != 2 {
		t.Errorf("left: %d bindings, %d flows, %d ports (want the 2 forwarded)", len(n.binds), len(n.flows), n.ports.InUse())
	}
	// IPv6 flows are not the NAT's.
	f6 := lanFlow(session.UDP, "[2001:db8:5::2]:1", "[2001:db8:6::2]:2")
	if n.lan(f6) != f6 {
		t.Error("IPv6 flow changed")
	}
}

func TestSiteNATExhausted(t *testing.T) {
	n := newSiteNAT()
	if err := n.grant(netip.MustParseAddr("203.0.113.10"), ports.Range{First: 4000, Last: 4001}, nil); err != nil {
		t.Fatal(err)
	}
	for i, src := range []string{"192.0.2.2:1", "192.0.2.2:2"} {
		if _, err := n.outbound(lanFlow(session.UDP, src, "198.51.100.10:53")); err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
	}
	if f, err := n.outbound(lanFlow(session.UDP, "192.0.2.2:3", "198.51.100.10:53")); err == nil {
		t.Fatalf("third endpoint mapped to %v with two ports", f.Site)
	}
}
