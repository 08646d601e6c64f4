package xdp

import (
	"bytes"
	"testing"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestFixturesDifferential: every table fixture through XDP and the model;
// same verdict, bytes, reason counter, flow counters and miss record, and
// the expected ones.
func TestFixturesDifferential(t *testing.T) {
	h := newHarness(t)
	h.checkReasons = true
	for _, f := range xlattest.Fixtures() {
		t.Run(f.Name, func(t *testing.T) {
			res, err := h.compare(f.Role, f.In)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != f.Verdict || res.Reason != f.Reason {
				t.Fatalf("got %v/%v, want %v/%v", res.Verdict, res.Reason, f.Verdict, f.Reason)
			}
			if f.Out != nil {
				if !bytes.Equal(res.Out, f.Out) {
					t.Fatalf("output differs from the fixture")
				}
				if err := xlattest.VerifyChecksums(res.Out); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	h.noStrayMisses(t)
}

// Every fixture through every role: the roles differ only on misses, and
// both must agree on all of them.
func TestFixturesAllRoles(t *testing.T) {
	h := newHarness(t)
	for _, f := range xlattest.Fixtures() {
		for _, r := range []xlat.Role{xlat.RoleEdgeLAN, xlat.RoleEdgeWAN, xlat.RoleRelayExt} {
			if _, err := h.compare(r, f.In); err != nil {
				t.Errorf("%s as %v: %v", f.Name, r, err)
			}
		}
	}
	h.noStrayMisses(t)
}

// TestRandomCorpus: at least 100k random and mutated packets through XDP
// and the model, zero mismatches; every translated output of a valid
// input passes gopacket's checksum verification; reason counters agree
// in total, and some of them are TCP data offsets the parser drops.
func TestRandomCorpus(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	h := newHarness(t)
	before := h.reasonTotals(t)
	var model [xlat.NumReasons]uint64
	gen := xlattest.NewGen(h.world, 1)
	mismatches, hits, badOut, errs := 0, 0, 0, 0
	for i := range n {
		role, in := gen.Packet()
		res, err := h.compare(role, in)
		if err != nil {
			mismatches++
			if mismatches <= 5 {
				t.Errorf("packet %d (%v) %x: %v", i, role, in, err)
			}
			continue
		}
		model[res.Reason]++
		if !res.Hit {
			continue
		}
		hits++
		if res.ICMPError {
			errs++
		}
		e, _ := h.world.Lookup(res.Key)
		if e.Action == xlat.ActUnwrap46 && e.Proto == 58 {
			continue // the random inner payload has no valid ICMPv6 checksum
		}
		if xlattest.VerifyChecksums(in) == nil {
			if err := xlattest.VerifyChecksums(res.Out); err != nil {
				badOut++
				if badOut <= 5 {
					t.Errorf("packet %d: valid input, translated output: %v\nin  %x\nout %x", i, err, in, res.Out)
				}
			}
		}
	}
	after := h.reasonTotals(t)
	for r := xlat.ReasonPassNotIP; r < xlat.NumReasons; r++ {
		if got := after[r] - before[r]; got != model[r] {
			t.Errorf("reason %v: xdp counted %d, model %d", r, got, model[r])
		}
	}
	h.noStrayMisses(t)
	t.Logf("%d packets, %d translated (%d ICMP errors), %d mismatches, %d bad output checksums; reasons %v", n, hits, errs, mismatches, badOut, nonZero(model))
	if hits < n/5 || errs < n/100 {
		t.Errorf("only %d of %d packets translated, %d ICMP errors: the corpus misses paths", hits, n, errs)
	}
	if model[xlat.ReasonDropBadTCPOffset] == 0 {
		t.Errorf("no TCP segment with a bad data offset in the corpus: %v", nonZero(model))
	}
}

func (h *harness) reasonTotals(t *testing.T) [xlat.NumReasons]uint64 {
	t.Helper()
	a, err := h.edge.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.relay.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		a[i] += b[i]
	}
	return a
}

func nonZero(c [xlat.NumReasons]uint64) map[string]uint64 {
	m := map[string]uint64{}
	for r, n := range c {
		if n != 0 {
			m[xlat.Reason(r).String()] = n
		}
	}
	return m
}

// FuzzDifferential: any bytes, any role, through XDP and the model.
func FuzzDifferential(f *testing.F) {
	for _, fx := range xlattest.Fixtures() {
		f.Add(uint8(fx.Role), fx.In)
	}
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, role uint8, in []byte) {
		if len(in) < 14 || len(in) > 1600 {
			return // BPF_PROG_RUN takes 14 bytes up to about a page
		}
		r := xlat.Role(role % 3)
		res, err := h.compare(r, in)
		if err != nil {
			t.Fatalf("%v %x: %v", r, in, err)
		}
		if res.Hit && xlattest.VerifyChecksums(in) == nil {
			e, _ := h.world.Lookup(res.Key)
			if !(e.Action == xlat.ActUnwrap46 && e.Proto == 58) {
				if err := xlattest.VerifyChecksums(res.Out); err != nil {
					t.Fatalf("valid input, bad output: %v", err)
				}
			}
		}
	})
}
