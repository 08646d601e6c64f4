package cgnat_test

import (
	"bytes"
	"net/netip"
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

// TestHairpinTCPState: after the fixtures' TCP connection from A to B
// through B's public address:port (SYN, SYN/ACK, data, a FIN each way),
// each side's mapping holds the whole connection in its state bits,
// since every segment is outbound for its sender's mapping and inbound
// for its receiver's: both SYNs and both FINs, so the agent times both
// out as transitory, not as established. Where the filter stopped A's
// SYN (the dependent modes: B had not sent to A), B's mapping never saw
// it come in.
func TestHairpinTCPState(t *testing.T) {
	for _, f := range []cgnat.Filtering{cgnat.EIF, cgnat.ADF, cgnat.APDF} {
		w := newWorld(t, f)
		for _, fx := range cgnattest.Fixtures(f) {
			w.run(fx.Role, append([]byte(nil), fx.In...))
		}
		for _, k := range []struct {
			addr netip.Addr
			port uint16
		}{{cgnattest.SubA, 6100}, {cgnattest.SubB, 7100}} {
			found := false
			for sl, in := range w.s.In {
				if sl.Plane != 0 || in.Addr != k.addr || in.Port != k.port {
					continue
				}
				found = true
				want := cgnat.TCPSynOut | cgnat.TCPSynIn | cgnat.TCPFinOut | cgnat.TCPFinIn
				if f != cgnat.EIF && k.addr == cgnattest.SubB {
					want &^= cgnat.TCPSynIn
				}
				if in.TCP != want {
					t.Errorf("%v: %v:%d's mapping has TCP bits %05b, want %05b", f, k.addr, k.port, in.TCP, want)
				}
			}
			if !found {
				t.Errorf("%v: no TCP mapping of %v:%d", f, k.addr, k.port)
			}
		}
	}
}
