package cgnat_test

import (
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// FuzzModel: any bytes through either side of the model, state carried
// from input to input (NAT64's fixtures among the seeds): no panic (the
// parsing is bounded), an untouched packet keeps its bytes, a
// translation keeps the frame's length (NAPT) or changes it by the
// headers' difference (NAT64), and a valid input gives valid checksums. Needs no privileges (the
// datapath's differential fuzz is xdp's FuzzCGNAT).
func FuzzModel(f *testing.F) {
	for _, fx := range cgnattest.Fixtures(cgnat.APDF) {
		f.Add(fx.Role == xlat.RoleRelaySub, fx.In)
	}
	w := newWorld(f, cgnat.APDF)
	f.Fuzz(func(t *testing.T, subSide bool, in []byte) {
		role := xlat.RoleRelayExt
		if subSide {
			role = xlat.RoleRelaySub
		}
		orig := append([]byte(nil), in...)
		res := w.run(role, in)
		switch {
		case res.Reason == xlat.ReasonCGNATRefused || res.Reason == xlat.ReasonNAT64TooBig:
			if want := map[byte]int{0x08: 70, 0x86: 110}[orig[12]]; len(res.Out) != want {
				t.Fatalf("%v answer of %d bytes, want %d", res.Reason, len(res.Out), want)
			}
		case !res.Hit:
			if string(res.Out) != string(orig) {
				t.Fatalf("%v: untouched packet changed", res.Reason)
			}
		case role == xlat.RoleRelayExt && !cgnats(&w.c, res.Key):
			// the carriers' (their own fuzzing is session/xlat's)
		default:
			// NAPT keeps the length; NAT64 takes 20 bytes off an IPv6
			// packet (40 off an error, whose quote shrinks too) and adds
			// them back the other way.
			d := 0
			if res.Out[12] != orig[12] {
				d = 20
				if res.ICMPError {
					d = 40
				}
				if orig[12] == 0x86 {
					d = -d
				}
			}
			if len(res.Out) != len(orig)+d {
				t.Fatalf("translation changed the length %d -> %d, want %+d", len(orig), len(res.Out), d)
			}
			if xlattest.VerifyChecksums(orig) == nil {
				if err := xlattest.VerifyChecksums(res.Out); err != nil {
					t.Fatalf("valid input, bad output: %v", err)
				}
			}
		}
	})
}

// cgnats reports whether an Internet packet with key k is the CGNAT's: to
// a block port of the pool.
func cgnats(c *cgnat.Config, k xlat.Key) bool {
	_, ok := c.PoolPort(k.Dst, k.DPort)
	return k.Dst.Is4() && ok
}
