package cgnat_test

import (
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// FuzzModel: any bytes through either side of the model, state carried
// from input to input: no panic (the parsing is bounded), an untouched
// packet keeps its bytes, a translation keeps the frame's length (NAPT)
// and a valid input gives valid checksums. Needs no privileges (the
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
		case res.Reason == xlat.ReasonCGNATRefused:
			if len(res.Out) != 70 {
				t.Fatalf("refusal of %d bytes", len(res.Out))
			}
		case !res.Hit:
			if string(res.Out) != string(orig) {
				t.Fatalf("%v: untouched packet changed", res.Reason)
			}
		case role == xlat.RoleRelaySub || len(res.Out) == len(orig) && orig[12] == 0x08:
			if len(res.Out) != len(orig) {
				t.Fatalf("NAPT changed the length %d -> %d", len(orig), len(res.Out))
			}
			if xlattest.VerifyChecksums(orig) == nil {
				if err := xlattest.VerifyChecksums(res.Out); err != nil {
					t.Fatalf("valid input, bad output: %v", err)
				}
			}
		}
	})
}
