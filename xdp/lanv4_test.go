package xdp

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestSetLANv4ToAgent flips the switch on a loaded datapath: a LAN host's
// IPv4 packet to the Internet goes to the stack while the site has no
// public IPv4, and to the agent once it has, in XDP as in the model.
func TestSetLANv4ToAgent(t *testing.T) {
	h := newHarness(t)
	in := xlattest.Build(xlattest.Spec{Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("198.51.100.10"),
		Proto: 17, SPort: 40000, DPort: 53, Payload: []byte("query"), TTL: 64})
	ping := xlattest.Build(xlattest.Spec{Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("198.51.100.10"),
		Proto: 1, SPort: 77, Payload: []byte("ping"), TTL: 64})
	for _, on := range []bool{false, true, false} {
		if err := h.edge.SetLANv4ToAgent(on); err != nil {
			t.Fatal(err)
		}
		h.cfgE.LANv4ToAgent = on
		res, err := h.compare(xlat.RoleEdgeLAN, append([]byte(nil), in...))
		if err != nil {
			t.Fatalf("switch %v: %v", on, err)
		}
		want := xlat.ReasonPassNotOurs
		if on {
			want = xlat.ReasonMiss
		}
		if res.Reason != want {
			t.Errorf("switch %v: reason %v, want %v", on, res.Reason, want)
		}
		// A link-local destination is never taken to the relay (its
		// cloud's metadata service may live there); it is the stack's
		// while the switch is off, as any IPv4.
		meta := xlattest.Build(xlattest.Spec{Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("169.254.169.254"),
			Proto: 6, SPort: 40001, DPort: 80, Payload: []byte("GET"), TTL: 64})
		wantMeta := xlat.ReasonPassNotOurs
		if on {
			wantMeta = xlat.ReasonDropMartianDst
		}
		if res, err := h.compare(xlat.RoleEdgeLAN, meta); err != nil || res.Reason != wantMeta {
			t.Errorf("switch %v: to 169.254.169.254 %v, %v; want %v", on, res.Reason, err, wantMeta)
		}
		// Ping keeps the ordinary path either way.
		if res, err := h.compare(xlat.RoleEdgeLAN, append([]byte(nil), ping...)); err != nil || res.Reason != xlat.ReasonPassNotOurs {
			t.Errorf("switch %v: ping %v, %v; want %v", on, res.Reason, err, xlat.ReasonPassNotOurs)
		}
	}
}
