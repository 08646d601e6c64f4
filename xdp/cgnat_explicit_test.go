package xdp

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestCGNATExplicit: a subscriber's explicit mapping (PCP, NAT-PMP) made
// by the agent (MapExplicit, the model's State.MapExplicit) in each
// filtering mode: it holds the port it was given (a new flow does not
// take it), admits a remote nobody behind it talked to and another
// subscriber's hairpinned packet, carries the subscriber's own outbound
// flows from that port; an implicit mapping is made explicit at its own
// port only; a taken port or a block of another subscriber is refused;
// Unexplicit puts the filter back; ReleaseMapping ends it. XDP and the
// model agree on every packet and on the state after.
func TestCGNATExplicit(t *testing.T) {
	for _, f := range filterings {
		t.Run(f.String(), func(t *testing.T) {
			h := newCGHarness(t, f)
			h.checkReasons = true
			both := func(model, dp error) error {
				if (model == nil) != (dp == nil) || errors.Is(model, cgnat.ErrPortTaken) != errors.Is(dp, cgnat.ErrPortTaken) {
					t.Fatalf("model %v, datapath %v", model, dp)
				}
				return model
			}
			explicit := func(k cgnat.Key, pub uint16) error {
				return both(h.s.MapExplicit(&h.c, k, cgnattest.Pub1, pub), h.d.MapExplicit(k, cgnattest.Pub1, pub))
			}
			send := func(what string, role xlat.Role, in []byte, want xlat.Reason) xlat.Result {
				t.Helper()
				res, err := h.compare(role, in)
				if err != nil || res.Reason != want {
					t.Fatalf("%s: %v (want %v), %v", what, res.Reason, want, err)
				}
				return res
			}
			udp := func(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) []byte {
				return xlattest.Build(xlattest.Spec{Proto: 17, Src: src, SPort: sport, Dst: dst, DPort: dport, Payload: []byte("x")})
			}
			h.s.Epoch = 3
			if err := h.d.SetCGNATEpoch(3); err != nil {
				t.Fatal(err)
			}
			lo := cgnattest.PortLo
			a := cgnat.Key{Addr: cgnattest.SubA, Port: 7000, Proto: 17}
			if err := explicit(a, lo); err != nil {
				t.Fatal(err)
			}
			// A new flow does not take the explicit mapping's port.
			res := send("a new flow", xlat.RoleRelaySub, udp(cgnattest.SubA, 7100, cgnattest.R4, 53), xlat.ReasonNone)
			if p := uint16(res.Out[14+20])<<8 | uint16(res.Out[14+21]); p == lo {
				t.Fatalf("a new flow took the explicit port %d", p)
			}
			// A remote nobody talked to, and another subscriber, hairpinned.
			send("inbound from a stranger", xlat.RoleRelayExt, udp(cgnattest.R4c, 999, cgnattest.Pub1, lo), xlat.ReasonNone)
			send("hairpin from B", xlat.RoleRelaySub, udp(cgnattest.SubB, 8000, cgnattest.Pub1, lo), xlat.ReasonNone)
			send("A's own outbound", xlat.RoleRelaySub, udp(cgnattest.SubA, 7000, cgnattest.R4, 53), xlat.ReasonNone)
			// The port is A's now: another key cannot have it.
			if err := explicit(cgnat.Key{Addr: cgnattest.SubA, Port: 7001, Proto: 17}, lo); !errors.Is(err, cgnat.ErrPortTaken) {
				t.Fatalf("a taken port: %v", err)
			}
			// An implicit mapping: explicit at its own port only.
			res = send("implicit", xlat.RoleRelaySub, udp(cgnattest.SubA, 7200, cgnattest.R4, 53), xlat.ReasonNone)
			ip := uint16(res.Out[14+20])<<8 | uint16(res.Out[14+21])
			k := cgnat.Key{Addr: cgnattest.SubA, Port: 7200, Proto: 17}
			if err := explicit(k, ip+1); !errors.Is(err, cgnat.ErrPortTaken) {
				t.Fatalf("an implicit mapping moved: %v", err)
			}
			if err := explicit(k, ip); err != nil {
				t.Fatal(err)
			}
			send("to the implicit, now explicit", xlat.RoleRelayExt, udp(cgnattest.R4c, 999, cgnattest.Pub1, ip), xlat.ReasonNone)
			// B's block is not A's.
			b0, _ := h.c.BlockAt(h.c.BlockID(1, 0))
			if both(h.s.MapExplicit(&h.c, cgnat.Key{Addr: cgnattest.SubA, Port: 7300, Proto: 17}, b0, lo),
				h.d.MapExplicit(cgnat.Key{Addr: cgnattest.SubA, Port: 7300, Proto: 17}, b0, lo)) == nil {
				t.Fatal("a port of B's block given to A")
			}
			h.compareState(t)

			// Back to an ordinary mapping: the filter applies again.
			h.s.Epoch = 4
			if err := errors.Join(h.d.SetCGNATEpoch(4), h.s.Unexplicit(&h.c, a), h.d.Unexplicit(a)); err != nil {
				t.Fatal(err)
			}
			want := xlat.ReasonDropCGNATFiltered
			if f == cgnat.EIF {
				want = xlat.ReasonNone
			}
			send("a stranger after Unexplicit", xlat.RoleRelayExt, udp(cgnattest.R4c, 998, cgnattest.Pub1, lo), want)
			h.compareState(t)
			if err := errors.Join(h.s.Release(&h.c, k), h.d.ReleaseMapping(k)); err != nil {
				t.Fatal(err)
			}
			send("after release", xlat.RoleRelayExt, udp(cgnattest.R4c, 999, cgnattest.Pub1, ip), xlat.ReasonDropCGNATNoMapping)
			h.compareState(t)
		})
	}
}

// TestCGNATExplicitRefusesNAT64: explicit mappings are NAT44's only. A
// NAT64 host's key (A6, of a /64 that holds the second block of Pub1) is
// refused by name (cgnat.ErrExplicit64) by the datapath and the model
// alike, for a port of its /64's own block and for its /64's first
// address; nothing is written (the model and the datapath still agree),
// and a NAT64 mapping its packets made stays an ordinary one (filtered).
func TestCGNATExplicitRefusesNAT64(t *testing.T) {
	h := newCGHarness(t, cgnat.APDF)
	port := cgnattest.PortLo + uint16(h.c.BlockSize()) // the /64's block's first port
	out := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.A6, SPort: 5000, Dst: xlat.Embed(xlat.WKP, cgnattest.R4), DPort: 53})
	if res, err := h.compare(xlat.RoleRelaySub, out); err != nil || res.Reason != xlat.ReasonNone {
		t.Fatalf("NAT64 outbound: %v %v", res.Reason, err)
	}
	for _, k := range []cgnat.Key{
		{Addr: cgnattest.A6, Port: 5000, Proto: 17},
		{Addr: cgnattest.A6, Port: 6000, Proto: 6},
		{Addr: cgnattest.Sub6(cgnattest.A6), Port: 6000, Proto: 17},
	} {
		if err := h.d.MapExplicit(k, cgnattest.Pub1, port+1); !errors.Is(err, cgnat.ErrExplicit64) {
			t.Errorf("datapath MapExplicit %+v: %v, want ErrExplicit64", k, err)
		}
		if err := h.s.MapExplicit(&h.c, k, cgnattest.Pub1, port+1); !errors.Is(err, cgnat.ErrExplicit64) {
			t.Errorf("model MapExplicit %+v: %v, want ErrExplicit64", k, err)
		}
		if err := h.d.Unexplicit(k); !errors.Is(err, cgnat.ErrExplicit64) {
			t.Errorf("datapath Unexplicit %+v: %v, want ErrExplicit64", k, err)
		}
	}
	h.compareState(t)
	in := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.R4c, SPort: 53, Dst: cgnattest.Pub1, DPort: port})
	if res, err := h.compare(xlat.RoleRelayExt, in); err != nil || res.Reason != xlat.ReasonDropCGNATFiltered {
		t.Fatalf("a remote nobody talked to, to the NAT64 mapping: %v (want filtered), %v", res.Reason, err)
	}
}

// BenchmarkCGNATExplicit: what a subscriber's PCP grant and release cost
// the datapath (MapExplicit then ReleaseMapping), against one mapping
// lookup (CGNATMapping, one syscall) as the baseline.
func BenchmarkCGNATExplicit(b *testing.B) {
	h := newCGHarness(b, cgnat.APDF)
	k := cgnat.Key{Addr: cgnattest.SubA, Port: 7000, Proto: 17}
	b.Run("lookup", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := h.d.CGNATMapping(k); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("map-release", func(b *testing.B) {
		for b.Loop() {
			if err := errors.Join(h.d.MapExplicit(k, cgnattest.Pub1, cgnattest.PortLo+3), h.d.ReleaseMapping(k)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
