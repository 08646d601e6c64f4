package ports

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// TestEdgeInboundShare: inbound grants stop at their share of the range
// (refused as inbound-share), outbound grants still get the rest, and a
// released inbound port frees its share.
func TestEdgeInboundShare(t *testing.T) {
	e, err := NewEdge(EdgeConfig{Ports: Range{61000, 61009}, Quarantine: -1, InboundShare: 40})
	if err != nil {
		t.Fatal(err)
	}
	var in []uint16
	for range 4 {
		p, err := e.GrantInbound(session.UDP)
		if err != nil {
			t.Fatalf("inbound grant %d of a share of 4: %v", len(in)+1, err)
		}
		in = append(in, p)
	}
	if _, err := e.GrantInbound(session.UDP); !errors.Is(err, ErrInboundShare) {
		t.Fatalf("fifth inbound grant of a 40%% share of 10 ports: %v, want inbound-share", err)
	}
	if _, err := e.GrantInbound(session.TCP); err != nil {
		t.Fatalf("the share is per protocol: TCP refused: %v", err)
	}
	for i := range 6 {
		if _, err := e.Grant(session.UDP); err != nil {
			t.Fatalf("outbound grant %d with inbound at its share: %v", i+1, err)
		}
	}
	if err := e.Release(session.UDP, in[0]); err != nil {
		t.Fatal(err)
	}
	if got := e.InboundInUse(session.UDP); got != 3 {
		t.Errorf("inbound ports in use %d, want 3", got)
	}
	if _, err := e.GrantInbound(session.UDP); err != nil {
		t.Errorf("inbound grant after one inbound release: %v", err)
	}
	if n := e.Refused.Get(ReasonInboundShare); n != 1 {
		t.Errorf("inbound-share refusals %d, want 1", n)
	}
}

// TestRelayInboundShare: on the relay, inbound grants stop at their
// share of a pool (per CGNAT address: another address has its own) and
// of a site's quota; outbound grants of the same site and pool go on.
func TestRelayInboundShare(t *testing.T) {
	relay := netip.MustParseAddr("192.0.2.1")
	cgn1, cgn2 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	r, err := NewRelay(RelayConfig{Addrs: []netip.Addr{relay}, Ports: Range{20000, 20009}, Quarantine: -1, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.SetSite("a", 100)
	r.SetSite("b", 4)
	var leases []Lease
	for range 5 {
		l, err := r.GrantInbound("a", cgn1, session.UDP)
		if err != nil {
			t.Fatalf("inbound grant %d of a pool's share of 5: %v", len(leases)+1, err)
		}
		leases = append(leases, l)
	}
	if _, err := r.GrantInbound("a", cgn1, session.UDP); !errors.Is(err, ErrInboundShare) {
		t.Fatalf("sixth inbound grant from one pool of 10: %v, want inbound-share", err)
	}
	if _, err := r.GrantInbound("a", cgn2, session.UDP); err != nil {
		t.Fatalf("another CGNAT address's pool: %v", err)
	}
	for i := range 5 {
		if _, err := r.Grant("a", cgn1, session.UDP); err != nil {
			t.Fatalf("outbound grant %d with inbound at its share: %v", i+1, err)
		}
	}
	if err := r.Release(leases[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GrantInbound("a", cgn1, session.TCP); err != nil {
		t.Fatalf("another protocol's pool: %v", err)
	}
	if got := r.HeldInbound("a"); got != 6 {
		t.Errorf("site a holds %d inbound ports, want 6", got)
	}

	// Site b's quota of 4: inbound flows may hold 2 of them, outbound
	// flows the other 2.
	for i := range 2 {
		if _, err := r.GrantInbound("b", cgn2, session.TCP); err != nil {
			t.Fatalf("site b inbound grant %d: %v", i+1, err)
		}
	}
	if _, err := r.GrantInbound("b", cgn2, session.TCP); !errors.Is(err, ErrInboundShare) {
		t.Fatalf("site b's third inbound grant of a quota of 4: %v, want inbound-share", err)
	}
	for i := range 2 {
		if _, err := r.Grant("b", cgn2, session.TCP); err != nil {
			t.Fatalf("site b outbound grant %d: %v", i+1, err)
		}
	}
	if n := r.Refused.Get(ReasonInboundShare); n != 2 {
		t.Errorf("inbound-share refusals %d, want 2", n)
	}
}
