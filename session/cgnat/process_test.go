package cgnat_test

import (
	"bytes"
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// run is one packet through the model in the world of mode f.
type world struct {
	c  cgnat.Config
	s  *cgnat.State
	xc xlat.Config
	t  *xlattest.Tables
}

func newWorld(t testing.TB, f cgnat.Filtering) *world {
	w := &world{c: cgnattest.Config(f), s: cgnat.NewState(), xc: xlattest.Config(xlattest.RelayAddr), t: xlattest.World()}
	if err := w.c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cgnattest.Setup(&w.c, cgnattest.ModelGrants(&w.c, w.s)); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) run(role xlat.Role, in []byte) xlat.Result {
	if role == xlat.RoleRelaySub {
		return cgnat.Sub(&w.c, w.s, in)
	}
	return cgnat.Ext(&w.c, w.s, &w.xc, w.t, in)
}

// The model against the fixtures' independently built expectations, in
// each filtering mode: verdicts, reasons, bytes, valid checksums.
func TestFixtures(t *testing.T) {
	for _, f := range []cgnat.Filtering{cgnat.EIF, cgnat.ADF, cgnat.APDF} {
		t.Run(f.String(), func(t *testing.T) {
			w := newWorld(t, f)
			for _, fx := range cgnattest.Fixtures(f) {
				res := w.run(fx.Role, append([]byte(nil), fx.In...))
				if res.Verdict != fx.Verdict || res.Reason != fx.Reason {
					t.Errorf("%s: got %v/%v, want %v/%v", fx.Name, res.Verdict, res.Reason, fx.Verdict, fx.Reason)
					continue
				}
				if fx.Out != nil {
					if !bytes.Equal(res.Out, fx.Out) {
						t.Errorf("%s: output\n got  %x\n want %x", fx.Name, res.Out, fx.Out)
					}
					if err := xlattest.VerifyChecksums(res.Out); err != nil {
						t.Errorf("%s: %v", fx.Name, err)
					}
				} else if !bytes.Equal(res.Out, fx.In) {
					t.Errorf("%s: untouched packet changed", fx.Name)
				}
			}
		})
	}
}
