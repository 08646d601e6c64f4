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

// TestMalformedSYNMakesNoMapping: a subscriber's SYN whose TCP data
// offset is 3 (a 12-byte header) is dropped under drop-bad-tcp-offset
// and takes no port: the model's mappings, slots and events stay as they
// were. The same SYN with offset 5 then makes the mapping, so it is the
// data offset alone that stopped it.
func TestMalformedSYNMakesNoMapping(t *testing.T) {
	w := newWorld(t, cgnat.EIF)
	syn := xlattest.Spec{Proto: 6, Src: cgnattest.SubA, SPort: 6000, Dst: cgnattest.R4, DPort: 443,
		TTL: 64, TCPFlags: 0x02, Payload: []byte("some bytes of a payload, more than twenty")}
	bad := xlattest.SetTCPDataOffset(xlattest.Build(syn), 3)
	out, in, ev := len(w.s.Out), len(w.s.In), len(w.s.Events)
	res := w.run(xlat.RoleRelaySub, bad)
	if res.Reason != xlat.ReasonDropBadTCPOffset || res.Verdict != xlat.Drop || res.Hit {
		t.Fatalf("SYN with data offset 3: %v/%v hit %v, want drop/%v", res.Verdict, res.Reason, res.Hit, xlat.ReasonDropBadTCPOffset)
	}
	if len(w.s.Out) != out || len(w.s.In) != in || len(w.s.Events) != ev {
		t.Fatalf("SYN with data offset 3: mappings %d -> %d, slots %d -> %d, events %d -> %d", out, len(w.s.Out), in, len(w.s.In), ev, len(w.s.Events))
	}
	res = w.run(xlat.RoleRelaySub, xlattest.Build(syn))
	if !res.Hit || len(w.s.Out) != out+1 {
		t.Fatalf("the same SYN with data offset 5: %v, %d mappings", res.Reason, len(w.s.Out))
	}
}

// TestGenBadTCPOffsets: the CGNAT's random generator (the corpus of
// xdp's TestCGNATRandomCorpus and TestNAT64RandomCorpus) makes TCP
// segments with bad data offsets, from subscribers and to mappings, so
// the differential corpus exercises the parser's check on both sides.
func TestGenBadTCPOffsets(t *testing.T) {
	for _, only64 := range []bool{false, true} {
		w := newWorld(t, cgnat.ADF)
		g := cgnattest.NewGen(&w.c, w.s, w.t, 7)
		g.NAT64Only = only64
		by := map[xlat.Role]int{}
		for range 20_000 {
			role, in := g.Packet()
			if res := w.run(role, in); res.Reason == xlat.ReasonDropBadTCPOffset {
				by[role]++
			}
		}
		if by[xlat.RoleRelaySub] == 0 || by[xlat.RoleRelayExt] == 0 {
			t.Errorf("NAT64 only %v: bad TCP data offsets dropped by side %v: the generator makes too few", only64, by)
		}
	}
}
