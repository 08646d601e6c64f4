package xdp

import (
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// verifierLimit is the kernel's bound on the instructions the verifier
// walks for one program (BPF_COMPLEXITY_LIMIT_INSNS); a program past it
// does not load.
const verifierLimit = 1_000_000

// TestVerifierHeadroom: every program, in every configuration that
// keeps the most code (the CGNAT with NAT64 under each filtering mode,
// and none), is verified in at most three quarters of the verifier's
// bound. The walk grows with the paths through a program, not its
// length: one early read of a map value in relay_sub (a prefetch of the
// mapping's bucket, since dropped) took it from 0.55M past the bound.
// This test speaks while there is room to find another shape, before a
// load fails.
func TestVerifierHeadroom(t *testing.T) {
	priv.Require(t)
	cases := []struct {
		name string
		opts Options
	}{{name: "no cgnat"}}
	for _, f := range []cgnat.Filtering{cgnat.EIF, cgnat.ADF, cgnat.APDF} {
		cases = append(cases, struct {
			name string
			opts Options
		}{f.String() + " with nat64", Options{CGNAT: cgnattest.Config(f)}})
	}
	for _, c := range cases {
		d, err := Load(xlattest.Config(xlattest.RelayAddr), c.opts)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, r := range []xlat.Role{xlat.RoleEdgeLAN, xlat.RoleEdgeWAN, xlat.RoleRelayExt, xlat.RoleRelaySub} {
			info, err := d.Program(r).Info()
			if err != nil {
				t.Fatal(err)
			}
			n, ok := info.VerifiedInstructions()
			switch {
			case !ok:
				t.Fatalf("%s %v: the kernel does not report verified instructions", c.name, r)
			case n > verifierLimit*3/4:
				t.Errorf("%s %v: %d instructions verified, over three quarters of the bound (%d)", c.name, r, n, verifierLimit)
			}
			t.Logf("%s %v: %d instructions verified", c.name, r, n)
		}
		d.Close()
	}
}
