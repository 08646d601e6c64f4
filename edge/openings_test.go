package edge

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session"
)

// TestOpenings: a flow's first packet opens it, the next few are held
// with it (at most maxHeld), take hands them over and ends the opening,
// and no more than the bound of flows open at once.
func TestOpenings(t *testing.T) {
	flow := func(port uint16) session.Flow {
		return session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), port),
			Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	}
	o := newOpenings(2)
	if first, why := o.hold(flow(1), []byte{1}); !first || why != "" {
		t.Fatalf("first packet: first %v, why %q", first, why)
	}
	for i := 1; i < maxHeld; i++ {
		if first, why := o.hold(flow(1), []byte{byte(i + 1)}); first || why != "" {
			t.Fatalf("packet %d: first %v, why %q", i+1, first, why)
		}
	}
	if _, why := o.hold(flow(1), []byte{99}); why != "held-overflow" {
		t.Errorf("packet %d: why %q, want held-overflow", maxHeld+1, why)
	}
	if first, _ := o.hold(flow(2), nil); !first {
		t.Error("a second flow (its packet only partly handed over) did not open")
	}
	if first, why := o.hold(flow(3), []byte{1}); first || why != "opening-full" {
		t.Errorf("a third flow with two opening: first %v, why %q; want opening-full", first, why)
	}
	if held := o.take(flow(1)); len(held) != maxHeld || held[0][0] != 1 || held[maxHeld-1][0] != maxHeld {
		t.Errorf("took %v, want the %d packets in order", held, maxHeld)
	}
	if held := o.take(flow(2)); len(held) != 0 {
		t.Errorf("took %v for a flow with nothing kept", held)
	}
	if first, why := o.hold(flow(3), []byte{1}); !first || why != "" {
		t.Errorf("after the others were taken: first %v, why %q", first, why)
	}
}
