package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	mbits "math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/bpffs"
	"github.com/unmap-dev/unmap/test/priv"
	"golang.org/x/sys/unix"
)

// cgHarness runs packets through the relay's programs with a CGNAT
// (relay_sub, relay_ext) and through the model (cgnat.Sub, cgnat.Ext),
// both with the same state, and reports any difference in verdict,
// reason, bytes or record handed to the agent; compareState compares the
// mappings, slots and block events both sides hold after them.
type cgHarness struct {
	c            cgnat.Config
	s            *cgnat.State
	xc           xlat.Config
	world        *xlattest.Tables
	d            *Datapath
	misses       *MissReader
	events       *CGNATEventReader
	checkReasons bool
	nevents      int // model events already matched
}

func newCGHarness(tb testing.TB, f cgnat.Filtering) *cgHarness {
	tb.Helper()
	h := &cgHarness{c: cgnattest.Config(f), s: cgnat.NewState(), xc: xlattest.Config(xlattest.RelayAddr), world: xlattest.World()}
	if err := h.c.ValidateSplit(h.xc, h.world.Prefix); err != nil {
		tb.Fatal(err)
	}
	h.d, h.misses = loadWorldOpts(tb, h.xc, Options{NoMissLimit: true, NoRefuseLimit: true, CGNAT: h.c, CGNATMappings: 1 << 16}, h.world)
	ev, err := h.d.CGNATEvents()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ev.Close() })
	h.events = ev
	g := cgnattest.ModelGrants(&h.c, h.s)
	both := cgnattest.Grants{
		Grant: func(sub netip.Addr, id uint32) error { return errors.Join(g.Grant(sub, id), h.d.GrantBlock(sub, id)) },
		Spent: func(sub netip.Addr) error { return errors.Join(g.Spent(sub), h.d.SetSpent(sub, true)) },
	}
	if err := cgnattest.Setup(&h.c, both); err != nil {
		tb.Fatal(err)
	}
	return h
}

func (h *cgHarness) model(role xlat.Role, in []byte) xlat.Result {
	if role == xlat.RoleRelaySub {
		return cgnat.Sub(&h.c, h.s, in)
	}
	return cgnat.Ext(&h.c, h.s, &h.xc, h.world, in)
}

func (h *cgHarness) compare(role xlat.Role, in []byte) (xlat.Result, error) {
	want := h.model(role, append([]byte(nil), in...))
	var before [xlat.NumReasons]uint64
	var err error
	if h.checkReasons {
		if before, err = h.d.Reasons(); err != nil {
			return want, err
		}
	}
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
	ret, err := h.d.Program(role).Run(opts)
	if err != nil {
		return want, fmt.Errorf("BPF_PROG_RUN: %w", err)
	}
	if xlat.Verdict(ret) != want.Verdict {
		return want, fmt.Errorf("verdict %v, model %v (%v)", xlat.Verdict(ret), want.Verdict, want.Reason)
	}
	if !bytes.Equal(opts.DataOut, want.Out) {
		return want, fmt.Errorf("bytes differ (model %v)\nxdp   %x\nmodel %x", want.Reason, opts.DataOut, want.Out)
	}
	if want.Reason.ToAgent() {
		h.misses.SetDeadline(time.Now().Add(time.Second))
		m, err := h.misses.Read()
		if err != nil {
			return want, fmt.Errorf("miss record: %w", err)
		}
		if !bytes.Equal(m.Data, want.Miss) || m.Role != role {
			return want, fmt.Errorf("miss record %d bytes role %v, model %d role %v", len(m.Data), m.Role, len(want.Miss), role)
		}
	}
	if h.checkReasons {
		after, err := h.d.Reasons()
		if err != nil {
			return want, err
		}
		for r := range after {
			exp := uint64(0)
			if xlat.Reason(r) == want.Reason && want.Reason != xlat.ReasonNone {
				exp = 1
			}
			if n := after[r] - before[r]; xlat.Reason(r) != xlat.ReasonNone && n != exp {
				return want, fmt.Errorf("reason %v counted %d, want %d", xlat.Reason(r), n, exp)
			}
		}
	}
	return want, nil
}

// compareState: the datapath's mappings and slots are the model's, and
// its block events are the model's new ones, in order.
func (h *cgHarness) compareState(tb testing.TB) {
	tb.Helper()
	m, err := h.d.CGNATMappings()
	if err != nil {
		tb.Fatal(err)
	}
	if len(m) != len(h.s.Out) {
		tb.Errorf("datapath holds %d mappings, model %d", len(m), len(h.s.Out))
	}
	for k, o := range h.s.Out {
		if m[k] != o {
			tb.Errorf("mapping %+v: datapath %+v, model %+v", k, m[k], o)
		}
	}
	sl, err := h.d.CGNATSlots()
	if err != nil {
		tb.Fatal(err)
	}
	if len(sl) != len(h.s.In) {
		tb.Errorf("datapath holds %d inbound slots, model %d", len(sl), len(h.s.In))
	}
	for k, v := range h.s.In {
		if sl[k] != v {
			tb.Errorf("slot %+v: datapath %+v, model %+v", k, sl[k], v)
		}
	}
	for ; h.nevents < len(h.s.Events); h.nevents++ {
		h.events.SetDeadline(time.Now().Add(time.Second))
		ev, err := h.events.Read()
		if err != nil {
			tb.Fatalf("event %d: %v", h.nevents, err)
		}
		if want := h.s.Events[h.nevents]; ev != want {
			tb.Errorf("event %d: datapath %+v, model %+v", h.nevents, ev, want)
		}
	}
	h.events.SetDeadline(time.Now().Add(10 * time.Millisecond))
	if ev, err := h.events.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		tb.Errorf("datapath event the model did not make: %+v (%v)", ev, err)
	}
	h.misses.SetDeadline(time.Now().Add(10 * time.Millisecond))
	if rec, err := h.misses.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		tb.Errorf("unexpected miss record %+v (err %v)", rec, err)
	}
}

var filterings = []cgnat.Filtering{cgnat.EIF, cgnat.ADF, cgnat.APDF}

// TestCGNATFixtures: the CGNAT's fixtures in order through XDP and the
// model, in each filtering mode (each with another block size): same
// verdict, bytes, reason counter and record to the agent, and the
// fixture's own expectation; then the same mappings, slots and events.
func TestCGNATFixtures(t *testing.T) {
	for _, f := range filterings {
		t.Run(f.String(), func(t *testing.T) {
			h := newCGHarness(t, f)
			h.checkReasons = true
			for _, fx := range cgnattest.Fixtures(f) {
				res, err := h.compare(fx.Role, fx.In)
				if err != nil {
					t.Fatalf("%s: %v", fx.Name, err)
				}
				if res.Verdict != fx.Verdict || res.Reason != fx.Reason {
					t.Fatalf("%s: got %v/%v, want %v/%v", fx.Name, res.Verdict, res.Reason, fx.Verdict, fx.Reason)
				}
				if fx.Out != nil && !bytes.Equal(res.Out, fx.Out) {
					t.Fatalf("%s: output differs from the fixture", fx.Name)
				}
			}
			h.compareState(t)
		})
	}
}

// The carriers' fixtures through the relay's Internet side with a CGNAT
// beside them: the pool split leaves every one of them as it was.
func TestCGNATCarriersUnchanged(t *testing.T) {
	h := newCGHarness(t, cgnat.EIF)
	for _, fx := range xlattest.Fixtures() {
		res, err := h.compare(xlat.RoleRelayExt, fx.In)
		if err != nil {
			t.Errorf("%s: %v", fx.Name, err)
			continue
		}
		if fx.Role == xlat.RoleRelayExt && (res.Verdict != fx.Verdict || res.Reason != fx.Reason) {
			t.Errorf("%s: got %v/%v, want %v/%v", fx.Name, res.Verdict, res.Reason, fx.Verdict, fx.Reason)
		}
	}
	h.compareState(t)
}

// TestCGNATExhaustion: a subscriber holding one block and told to refuse
// (spent) gets exactly the block's ports, each once, the agent an event
// when the block reaches its warn level, then an ICMP administratively
// prohibited answer at once for the next new flow; another subscriber
// goes on making mappings. XDP and the model agree on every packet and on
// the state after.
func TestCGNATExhaustion(t *testing.T) {
	h := newCGHarness(t, cgnat.ADF) // 64-port blocks
	e := netip.MustParseAddr("100.64.0.20")
	id := h.c.BlockID(1, 3)
	if err := errors.Join(h.s.Grant(&h.c, e, id), h.d.GrantBlock(e, id)); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(cgnattest.ModelGrants(&h.c, h.s).Spent(e), h.d.SetSpent(e, true)); err != nil {
		t.Fatal(err)
	}
	before, err := h.d.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	ports := map[uint16]bool{}
	size := h.c.BlockSize()
	for i := range size + 3 {
		in := xlattest.Build(xlattest.Spec{Proto: 17, Src: e, SPort: uint16(10000 + i), Dst: cgnattest.R4, DPort: 53, Payload: []byte("x")})
		res, err := h.compare(xlat.RoleRelaySub, in)
		if err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
		if i < size {
			if !res.Hit {
				t.Fatalf("flow %d of a %d-port block: %v", i, size, res.Reason)
			}
			p := uint16(res.Out[14+20])<<8 | uint16(res.Out[14+21])
			if ports[p] {
				t.Fatalf("port %d given twice", p)
			}
			ports[p] = true
			continue
		}
		if res.Verdict != xlat.TX || res.Reason != xlat.ReasonCGNATRefused {
			t.Fatalf("flow %d past the quota: %v/%v, want an admin-prohibited answer", i, res.Verdict, res.Reason)
		}
		if err := xlattest.VerifyChecksums(res.Out); err != nil || res.Out[14+20] != 3 || res.Out[14+21] != 13 {
			t.Fatalf("answer %x: %v", res.Out, err)
		}
	}
	a := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: 9999, Dst: cgnattest.R4, DPort: 53})
	if res, err := h.compare(xlat.RoleRelaySub, a); err != nil || !res.Hit {
		t.Fatalf("another subscriber's new flow: %v %v", res.Reason, err)
	}
	after, err := h.d.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	if n := after[xlat.ReasonCGNATRefused] - before[xlat.ReasonCGNATRefused]; n != 3 {
		t.Errorf("cgnat-refused counted %d, want 3", n)
	}
	if len(h.s.Events) != 1 || h.s.Events[0].Used != h.c.WarnAt() || h.s.Events[0].Sub != e {
		t.Errorf("model events %+v, want one at %d ports", h.s.Events, h.c.WarnAt())
	}
	h.compareState(t)
}

// TestCGNATRefusalRate: with the bound on (a burst of 2, one a minute),
// a spent subscriber's first packets are answered twice, then dropped
// and counted as drop-cgnat-refused-rate.
func TestCGNATRefusalRate(t *testing.T) {
	c := cgnattest.Config(cgnat.EIF)
	d, _ := loadWorldOpts(t, xlattest.Config(xlattest.RelayAddr), Options{NoMissLimit: true, CGNAT: c, CGNATMappings: 1024,
		RefuseRate: 1, RefuseBurst: 2}, xlattest.World())
	if err := d.SetSpent(cgnattest.SubD, true); err != nil {
		t.Fatal(err)
	}
	verdicts := map[xlat.Verdict]int{}
	for i := range 6 {
		in := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubD, SPort: uint16(1000 + i), Dst: cgnattest.R4, DPort: 53})
		ret, err := d.Program(xlat.RoleRelaySub).Run(&ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)})
		if err != nil {
			t.Fatal(err)
		}
		verdicts[xlat.Verdict(ret)]++
	}
	r, err := d.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	if verdicts[xlat.TX] != 2 || verdicts[xlat.Drop] != 4 || r[xlat.ReasonCGNATRefused] != 2 || r[xlat.ReasonDropCGNATRefusedRate] != 4 {
		t.Errorf("verdicts %v, counted refused %d, over rate %d; want 2 answered, 4 dropped", verdicts, r[xlat.ReasonCGNATRefused], r[xlat.ReasonDropCGNATRefusedRate])
	}
}

// TestCGNATRandomCorpus: at least 100k random and mutated packets (in
// all, over the three filtering modes) through XDP and the model, zero
// mismatches; the reason counters agree in total; every translated
// output of a valid input has valid checksums; the mappings, slots and
// events agree after. About a quarter of them are NAT64's.
func TestCGNATRandomCorpus(t *testing.T) {
	for i, f := range filterings {
		t.Run(f.String(), func(t *testing.T) { cgCorpus(t, f, uint64(i+1), false) })
	}
}

// TestNAT64RandomCorpus: the same with NAT64's packets only (at least
// 100k over the three modes, each mode with its prefix: the well-known
// one, a network-specific one, the well-known one): IPv6-only
// subscribers' packets, the Internet's to their mappings, and ICMP
// errors both ways, random and mutated.
func TestNAT64RandomCorpus(t *testing.T) {
	for i, f := range filterings {
		t.Run(f.String(), func(t *testing.T) { cgCorpus(t, f, uint64(i+101), true) })
	}
}

func cgCorpus(t *testing.T, f cgnat.Filtering, seed uint64, only64 bool) {
	n := 34_000 // per mode
	if testing.Short() {
		n = 4_000
	}
	h := newCGHarness(t, f)
	before, err := h.d.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	var model [xlat.NumReasons]uint64
	gen := cgnattest.NewGen(&h.c, h.s, h.world, seed)
	gen.NAT64Only = only64
	mismatches, hits, errs, badOut, hits64 := 0, 0, 0, 0, 0
	for j := range n {
		if j%4096 == 0 { // the agent's sweeps: outbound packets stamp the new epoch
			h.s.Epoch = uint16(j / 4096)
			if err := h.d.SetCGNATEpoch(h.s.Epoch); err != nil {
				t.Fatal(err)
			}
		}
		role, in := gen.Packet()
		res, err := h.compare(role, in)
		if err != nil {
			mismatches++
			if mismatches <= 5 {
				t.Errorf("packet %d (%v) %x: %v", j, role, in, err)
			}
			continue
		}
		model[res.Reason]++
		if res.Hit {
			hits++
			if res.ICMPError {
				errs++
			}
			if res.Out[12] != in[12] {
				hits64++
			}
			// A carriers' UDP carrier of ICMPv6 has a random inner
			// payload with no valid checksum (as in TestRandomCorpus).
			e, carrier := h.world.Lookup(res.Key)
			if xlattest.VerifyChecksums(in) == nil && !(carrier && e.Action == xlat.ActUnwrap46 && e.Proto == 58) {
				if err := xlattest.VerifyChecksums(res.Out); err != nil {
					badOut++
					if badOut <= 5 {
						t.Errorf("packet %d: valid input, output %v\nin  %x\nout %x", j, err, in, res.Out)
					}
				}
			}
		}
	}
	after, err := h.d.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	for r := xlat.ReasonPassNotIP; r < xlat.NumReasons; r++ {
		if got := after[r] - before[r]; got != model[r] {
			t.Errorf("reason %v: xdp counted %d, model %d", r, got, model[r])
		}
	}
	h.compareState(t)
	t.Logf("%d packets, %d translated (%d ICMP errors, %d NAT64), %d mappings, %d events, %d mismatches; reasons %v",
		n, hits, errs, hits64, len(h.s.Out), len(h.s.Events), mismatches, nonZero(model))
	if hits < n/8 || errs < n/200 || model[xlat.ReasonCGNATRefused] == 0 || model[xlat.ReasonCGNATNoBlock] == 0 || hits64 < n/50 {
		t.Errorf("the corpus misses paths: %d translated, %d errors, %d NAT64 of %d", hits, errs, hits64, n)
	}
	if only64 && (model[xlat.ReasonDropNAT64Source] == 0 || model[xlat.ReasonDropNAT64Dst] == 0 || model[xlat.ReasonDropNAT64Hairpin] == 0 || model[xlat.ReasonDropNAT64Ext] == 0 ||
		model[xlat.ReasonNAT64TooBig] == 0 || model[xlat.ReasonDropNAT64TooBig] == 0) {
		t.Errorf("the NAT64 corpus misses drops: %v", nonZero(model))
	}
}

// FuzzCGNAT: any bytes through either program of a CGNAT relay and the
// model; the state they share carries over from input to input.
func FuzzCGNAT(f *testing.F) {
	for _, fx := range cgnattest.Fixtures(cgnat.ADF) {
		f.Add(fx.Role == xlat.RoleRelaySub, fx.In)
	}
	h := newCGHarness(f, cgnat.ADF)
	f.Fuzz(func(t *testing.T, subSide bool, in []byte) {
		if len(in) < 14 || len(in) > 1600 {
			return // BPF_PROG_RUN takes 14 bytes up to about a page
		}
		role := xlat.RoleRelayExt
		if subSide {
			role = xlat.RoleRelaySub
		}
		res, err := h.compare(role, in)
		if err != nil {
			t.Fatalf("%v %x: %v", role, in, err)
		}
		if res.Hit && xlattest.VerifyChecksums(in) == nil {
			if err := xlattest.VerifyChecksums(res.Out); err != nil {
				t.Fatalf("valid input, bad output: %v", err)
			}
		}
	})
}

// FuzzNAT64: FuzzCGNAT seeded with NAT64's fixtures, on a relay whose
// NAT64 prefix is the well-known one: any bytes through either program
// and the model, state carried over.
func FuzzNAT64(f *testing.F) {
	for _, fx := range cgnattest.Fixtures64(cgnat.EIF) {
		f.Add(fx.Role == xlat.RoleRelaySub, fx.In)
	}
	h := newCGHarness(f, cgnat.EIF)
	f.Fuzz(func(t *testing.T, subSide bool, in []byte) {
		if len(in) < 14 || len(in) > 1600 {
			return
		}
		role := xlat.RoleRelayExt
		if subSide {
			role = xlat.RoleRelaySub
		}
		res, err := h.compare(role, in)
		if err != nil {
			t.Fatalf("%v %x: %v", role, in, err)
		}
		if res.Hit && xlattest.VerifyChecksums(in) == nil {
			if err := xlattest.VerifyChecksums(res.Out); err != nil {
				t.Fatalf("valid input, bad output: %v", err)
			}
		}
	})
}

// TestCGNATRelease: the agent's expiry (ReleaseMapping, the model's
// Release) ends a mapping: packets to its public port are dropped, its
// port is not taken again at once (the search goes on past the last port
// taken) but is when the block's search comes round to it, and the
// block's count goes down. XDP and the model agree throughout.
func TestCGNATRelease(t *testing.T) {
	h := newCGHarness(t, cgnat.ADF) // 64-port blocks
	h.checkReasons = true
	out := func(sport uint16) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: sport, Dst: cgnattest.R4, DPort: 53, Payload: []byte("x")})
	}
	pubPort := func(sport uint16) uint16 {
		t.Helper()
		res, err := h.compare(xlat.RoleRelaySub, out(sport))
		if err != nil || !res.Hit {
			t.Fatalf("flow from %d: %v %v", sport, res.Reason, err)
		}
		return uint16(res.Out[14+20])<<8 | uint16(res.Out[14+21])
	}
	p0, p1 := pubPort(5000), pubPort(5001)
	pubPort(5002)
	k := cgnat.Key{Addr: cgnattest.SubA, Port: 5001, Proto: 17}
	if err := errors.Join(h.s.Release(&h.c, k), h.d.ReleaseMapping(k)); err != nil {
		t.Fatal(err)
	}
	in := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.R4, SPort: 53, Dst: cgnattest.Pub1, DPort: p1, Payload: []byte("x")})
	if res, err := h.compare(xlat.RoleRelayExt, in); err != nil || res.Reason != xlat.ReasonDropCGNATNoMapping {
		t.Fatalf("to a released mapping: %v %v", res.Reason, err)
	}
	if p := pubPort(5003); p == p1 {
		t.Fatalf("released port %d taken again at once", p)
	}
	// The block's remaining ports, then the search comes round to p1.
	size := h.c.BlockSize()
	for i := range size - 4 {
		pubPort(uint16(6000 + i))
	}
	if p := pubPort(7000); p != p1 {
		t.Fatalf("the block's last free port: got %d, want the released %d", p, p1)
	}
	if b := h.s.Blocks[h.c.BlockID(0, 0)]; b.Used[1] != uint32(size) || p0 != cgnattest.PortLo {
		t.Fatalf("model block count %d, first port %d", b.Used[1], p0)
	}
	h.compareState(t)
	var blk datapathCgBlock
	if err := h.d.objs.CgBlocks.Lookup(h.c.BlockID(0, 0), &blk); err != nil || blk.Used[1] != uint32(size) || blk.Bits[1][0] != ^uint64(0) {
		t.Fatalf("datapath block: used %d, bits %#x (%v)", blk.Used[1], blk.Bits[1][0], err)
	}
}

// TestCGNATPermissionFollowsItsMapping: under address-dependent
// filtering, a permission belongs to the mapping that made it, not to
// its public port. A's flow to R4 at public port p ends (the agent's
// expiry); once the block's search comes round, another flow of A takes
// p and talks to R4b only: R4 must not reach it through the permission
// the ended mapping left (before, the permission was the port's, and
// let R4 in). R4b does reach it; and once the new flow talks to R4, so
// does R4. XDP and the model agree throughout.
func TestCGNATPermissionFollowsItsMapping(t *testing.T) {
	h := newCGHarness(t, cgnat.ADF) // 64-port blocks
	h.checkReasons = true
	out := func(sport uint16, dst netip.Addr) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: sport, Dst: dst, DPort: 53, Payload: []byte("x")})
	}
	pubPort := func(sport uint16, dst netip.Addr) uint16 {
		t.Helper()
		res, err := h.compare(xlat.RoleRelaySub, out(sport, dst))
		if err != nil || !res.Hit {
			t.Fatalf("flow from %d: %v %v", sport, res.Reason, err)
		}
		return uint16(res.Out[14+20])<<8 | uint16(res.Out[14+21])
	}
	from := func(remote netip.Addr, port uint16) xlat.Reason {
		t.Helper()
		in := xlattest.Build(xlattest.Spec{Proto: 17, Src: remote, SPort: 53, Dst: cgnattest.Pub1, DPort: port, Payload: []byte("x")})
		res, err := h.compare(xlat.RoleRelayExt, in)
		if err != nil {
			t.Fatal(err)
		}
		return res.Reason
	}
	p := pubPort(5000, cgnattest.R4)
	if r := from(cgnattest.R4, p); r != xlat.ReasonNone {
		t.Fatalf("R4 to the mapping that sent to it: %v", r)
	}
	k := cgnat.Key{Addr: cgnattest.SubA, Port: 5000, Proto: 17}
	if err := errors.Join(h.s.Release(&h.c, k), h.d.ReleaseMapping(k)); err != nil {
		t.Fatal(err)
	}
	// The rest of the block, then the search comes round to p.
	for i := range h.c.BlockSize() - 1 {
		pubPort(uint16(6000+i), cgnattest.R4b)
	}
	if got := pubPort(7000, cgnattest.R4b); got != p {
		t.Fatalf("the block's last free port: got %d, want the released %d", got, p)
	}
	if r := from(cgnattest.R4, p); r != xlat.ReasonDropCGNATFiltered {
		t.Fatalf("R4 to the port's new mapping, which never sent to it: %v, want %v", r, xlat.ReasonDropCGNATFiltered)
	}
	if r := from(cgnattest.R4b, p); r != xlat.ReasonNone {
		t.Fatalf("R4b to the mapping that sent to it: %v", r)
	}
	pubPort(7000, cgnattest.R4)
	if r := from(cgnattest.R4, p); r != xlat.ReasonNone {
		t.Fatalf("R4 once the new mapping sent to it: %v", r)
	}
	h.compareState(t)
}

// TestCGNATPermissionsNeverFull: the permissions are a least recently
// used hash, so a relay whose remotes change keeps letting answers in
// after it has recorded more permissions than it has room for (nobody
// deletes one when its mapping ends; a plain hash, full, took no new
// permission, and the answers of every new remote were filtered). A
// datapath sized for 16 mappings records 2000 permissions (one mapping
// to 2000 remotes, each answering at once): every answer passes.
func TestCGNATPermissionsNeverFull(t *testing.T) {
	priv.Require(t)
	c := cgnattest.Config(cgnat.APDF)
	d, _ := loadWorldOpts(t, xlattest.Config(xlattest.RelayAddr), Options{NoMissLimit: true, NoRefuseLimit: true, CGNAT: c, CGNATMappings: 16}, xlattest.World())
	if err := d.GrantBlock(cgnattest.SubA, c.BlockID(0, 0)); err != nil {
		t.Fatal(err)
	}
	if n := d.objs.CgPerms.MaxEntries(); n > 64 {
		t.Fatalf("cg_perms holds %d: the test wants it far smaller than its 2000 remotes", n)
	}
	var pub uint16
	for i := range 2000 {
		remote := netip.AddrFrom4([4]byte{198, 51, 100 + byte(i>>8&1), byte(i)})
		v, o := runRole(t, d, xlat.RoleRelaySub, xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: 5000, Dst: remote, DPort: 53, Payload: []byte("x")}))
		if v != xlat.Pass {
			t.Fatalf("out to remote %d: %v", i, v)
		}
		pub = uint16(o[14+20])<<8 | uint16(o[14+21])
		if v, _ := runRole(t, d, xlat.RoleRelayExt, xlattest.Build(xlattest.Spec{Proto: 17, Src: remote, SPort: 53, Dst: cgnattest.Pub1, DPort: pub, Payload: []byte("x")})); v != xlat.Pass {
			t.Fatalf("the answer of remote %d (%v): %v", i, remote, v)
		}
	}
}

// TestCGNATEpoch: an outbound packet stamps its mapping with the sweep
// epoch the agent set (an inbound one does not: outbound refresh, RFC
// 4787 REQ-6), so the agent finds idle mappings by reading alone.
func TestCGNATEpoch(t *testing.T) {
	h := newCGHarness(t, cgnat.EIF)
	k := cgnat.Key{Addr: cgnattest.SubA, Port: 5000, Proto: 17}
	send := func(role xlat.Role, in []byte) {
		t.Helper()
		if res, err := h.compare(role, in); err != nil || !res.Hit {
			t.Fatalf("%v %v", res.Reason, err)
		}
	}
	out := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: 5000, Dst: cgnattest.R4, DPort: 53})
	back := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.R4, SPort: 53, Dst: cgnattest.Pub1, DPort: cgnattest.PortLo})
	send(xlat.RoleRelaySub, out)
	h.s.Epoch = 9
	if err := h.d.SetCGNATEpoch(9); err != nil {
		t.Fatal(err)
	}
	send(xlat.RoleRelayExt, back)
	h.compareState(t)
	if e := h.s.Out[k].Epoch; e != 0 {
		t.Fatalf("an inbound packet stamped epoch %d", e)
	}
	send(xlat.RoleRelaySub, out)
	h.compareState(t)
	m, err := h.d.CGNATMappings()
	if err != nil || m[k].Epoch != 9 {
		t.Fatalf("datapath epoch %d after an outbound packet in epoch 9 (%v)", m[k].Epoch, err)
	}
}

// TestCGNATConcurrentNewMappings: two CPUs make the same new mappings at
// the same time (BPF_PROG_RUN from two threads, each on its own CPU, the
// same first packets in the same order). The bucket's lock lets one make
// it and the other find it: each key ends with one mapping, both
// threads' packets left with that mapping's address and port, no port
// is held twice, and the blocks' bits and counts equal the mappings.
// (The model has no races; this is the C's own.) A packet that found
// the lock held past its tries is dropped as drop-cgnat-busy, having
// taken nothing, and sent again; the count must match. The log says how
// many, and how many ports were given back (none, with the lock).
func TestCGNATConcurrentNewMappings(t *testing.T) {
	priv.Require(t)
	if n, err := ebpf.PossibleCPU(); err != nil || n < 2 {
		t.Skip("needs two CPUs")
	}
	c := cgnattest.Config(cgnat.EIF)
	d, _ := loadWorldOpts(t, xlattest.Config(xlattest.RelayAddr), Options{NoMissLimit: true, NoRefuseLimit: true,
		CGNAT: c, CGNATMappings: 1 << 14}, xlattest.World())
	subs := []netip.Addr{cgnattest.SubA, cgnattest.SubB}
	for i, s := range subs {
		for j := range 4 {
			if err := d.GrantBlock(s, c.BlockID(i, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	const perSub = 1500 // of the 2048 ports a protocol each holds
	var pkts [][]byte
	for i := range perSub {
		for _, s := range subs {
			pkts = append(pkts, xlattest.Build(xlattest.Spec{Proto: 17, Src: s, SPort: uint16(1000 + i), Dst: cgnattest.R4, DPort: 53}))
		}
	}
	outs := [2][][]byte{}
	errs := make(chan error, 2)
	var ready atomic.Int64 // a spin barrier per packet: both threads start it together
	var retries atomic.Int64
	for cpu := range 2 {
		outs[cpu] = make([][]byte, len(pkts))
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs <- err
				return
			}
			for i, in := range pkts {
				ready.Add(1)
				for ready.Load() < int64(2*(i+1)) {
				}
				opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
				ret, err := d.Program(xlat.RoleRelaySub).Run(opts)
				for try := 0; err == nil && xlat.Verdict(ret) == xlat.Drop && try < 100; try++ {
					// drop-cgnat-busy (checked below): the other
					// thread held the bucket's lock past the tries,
					// preempted in BPF_PROG_RUN as the datapath never
					// is; the drop took nothing, so the packet goes again.
					retries.Add(1)
					ret, err = d.Program(xlat.RoleRelaySub).Run(opts)
				}
				if err != nil || xlat.Verdict(ret) != xlat.Pass {
					errs <- fmt.Errorf("cpu %d packet %d: %v %v", cpu, i, xlat.Verdict(ret), err)
					return
				}
				outs[cpu][i] = opts.DataOut
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	rc, err := d.ReasonCounts()
	if err != nil {
		t.Fatal(err)
	}
	if rc["drop-cgnat-busy"] != uint64(retries.Load()) {
		t.Fatalf("%d packets dropped and sent again, %d counted drop-cgnat-busy", retries.Load(), rc["drop-cgnat-busy"])
	}
	t.Logf("%d packets found their bucket locked past the tries (sent again)", retries.Load())
	m, err := d.CGNATMappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != len(pkts) {
		t.Fatalf("%d mappings for %d keys", len(m), len(pkts))
	}
	held := map[[2]uint32]bool{}
	for i := range pkts {
		if !bytes.Equal(outs[0][i][26:], outs[1][i][26:]) {
			t.Fatalf("packet %d left with two mappings:\n%x\n%x", i, outs[0][i], outs[1][i])
		}
		pub := [2]uint32{binary.BigEndian.Uint32(outs[0][i][26:30]), uint32(binary.BigEndian.Uint16(outs[0][i][34:36]))}
		if held[pub] {
			t.Fatalf("public %v given twice", pub)
		}
		held[pub] = true
	}
	sl, err := d.CGNATSlots()
	if err != nil {
		t.Fatal(err)
	}
	bits, used, holes := 0, uint32(0), 0
	for i := range subs {
		for j := range 4 {
			var b datapathCgBlock
			if err := d.objs.CgBlocks.Lookup(c.BlockID(i, j), &b); err != nil {
				t.Fatal(err)
			}
			top := 0
			for k, w := range b.Bits[1] {
				bits += mbits.OnesCount64(w)
				if w != 0 {
					top = 64*k + 64 - mbits.LeadingZeros64(w)
				}
			}
			// Ports are taken in order, so a free port below the highest
			// taken one was taken by a race's loser and given back.
			holes += top - mbits.OnesCount64(b.Bits[1][0]) - mbits.OnesCount64(b.Bits[1][1]) - mbits.OnesCount64(b.Bits[1][2]) -
				mbits.OnesCount64(b.Bits[1][3]) - mbits.OnesCount64(b.Bits[1][4]) - mbits.OnesCount64(b.Bits[1][5]) -
				mbits.OnesCount64(b.Bits[1][6]) - mbits.OnesCount64(b.Bits[1][7])
			used += b.Used[1]
		}
	}
	if len(sl) != len(pkts) || bits != len(pkts) || used != uint32(len(pkts)) {
		t.Fatalf("%d keys: %d slots, %d bits, counts %d", len(pkts), len(sl), bits, used)
	}
	r, err := d.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d keys made twice at once, %d races lost (ports given back); reasons %v", len(pkts), holes, nonZero(r))
}

// TestCGNATDeterministic: deterministic mode written into the datapath
// (GrantDeterministic): a subscriber's first flows take the ports of its
// computed blocks, which look up to it (cgnat.Deterministic.Subscriber,
// what `unmap relay lookup` answers), and a subscriber past its blocks
// is refused at once, never sent to the agent.
func TestCGNATDeterministic(t *testing.T) {
	priv.Require(t)
	c := cgnat.Config{Inside: netip.MustParsePrefix("100.64.0.0/26"), Gateway: netip.MustParseAddr("100.64.0.1"),
		PoolFirst: cgnattest.Pub2, PoolAddrs: 6, PortLo: 1024, BlockBits: 6, Blocks: 64}
	m := cgnat.Deterministic{Config: &c, Quota: 1}
	d, _ := loadWorldOpts(t, xlattest.Config(xlattest.RelayAddr), Options{NoMissLimit: true, NoRefuseLimit: true,
		CGNAT: c, CGNATMappings: 1 << 12}, xlattest.World())
	if err := d.GrantDeterministic(m); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{2, 33, 63} {
		sub := netip.AddrFrom4([4]byte{100, 64, 0, byte(i)})
		for n := range c.BlockSize() + 1 {
			in := xlattest.Build(xlattest.Spec{Proto: 17, Src: sub, SPort: uint16(2000 + n), Dst: cgnattest.R4, DPort: 53})
			opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
			ret, err := d.Program(xlat.RoleRelaySub).Run(opts)
			if err != nil {
				t.Fatal(err)
			}
			if n == c.BlockSize() {
				if xlat.Verdict(ret) != xlat.TX {
					t.Fatalf("%v past its block: %v, want the admin-prohibited answer", sub, xlat.Verdict(ret))
				}
				continue
			}
			out := opts.DataOut
			a := netip.AddrFrom4([4]byte(out[26:30]))
			p := binary.BigEndian.Uint16(out[34:36])
			if got, ok := m.Subscriber(a, p); xlat.Verdict(ret) != xlat.Pass || !ok || got != sub {
				t.Fatalf("%v's flow %d left as %v:%d, which looks up to %v %v", sub, n, a, p, got, ok)
			}
		}
	}
	r, err := d.Reasons()
	if err != nil || r[xlat.ReasonCGNATNoBlock] != 0 {
		t.Fatalf("sent to the agent in deterministic mode: %d (%v)", r[xlat.ReasonCGNATNoBlock], err)
	}
}

// TestCGNATPinnedAcrossReload: a relay restart (a new Load on the pinned
// maps) keeps the subscribers' mappings, grants and taken ports: the
// second load translates an established mapping both ways as the first
// did, a new mapping takes the next port (not one already held), and a
// release through the new load's mapping of cg_blocks gives the port
// back.
func TestCGNATPinnedAcrossReload(t *testing.T) {
	priv.Require(t)
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "relay")
	c := cgnattest.Config(cgnat.EIF)
	opts := Options{PinPath: dir, NoMissLimit: true, NoRefuseLimit: true, CGNAT: c, CGNATMappings: 1 << 12}
	xc := xlattest.Config(xlattest.RelayAddr)
	run := func(d *Datapath, role xlat.Role, in []byte) []byte {
		t.Helper()
		opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
		ret, err := d.Program(role).Run(opts)
		if err != nil || xlat.Verdict(ret) != xlat.Pass {
			t.Fatalf("%v: %v %v", role, xlat.Verdict(ret), err)
		}
		return opts.DataOut
	}
	flow := func(sport uint16) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: sport, Dst: cgnattest.R4, DPort: 53})
	}
	back := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.R4, SPort: 53, Dst: cgnattest.Pub1, DPort: cgnattest.PortLo})
	d1, err := Load(xc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(d1.SetFIB(false), d1.GrantBlock(cgnattest.SubA, c.BlockID(0, 0))); err != nil {
		t.Fatal(err)
	}
	out1, in1 := run(d1, xlat.RoleRelaySub, flow(5000)), run(d1, xlat.RoleRelayExt, back)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Load(xc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if err := d2.SetFIB(false); err != nil {
		t.Fatal(err)
	}
	if out2, in2 := run(d2, xlat.RoleRelaySub, flow(5000)), run(d2, xlat.RoleRelayExt, back); !bytes.Equal(out1, out2) || !bytes.Equal(in1, in2) {
		t.Fatal("the established mapping translates otherwise after the reload")
	}
	if p := binary.BigEndian.Uint16(run(d2, xlat.RoleRelaySub, flow(5001))[34:]); p != cgnattest.PortLo+1 {
		t.Fatalf("a new mapping after the reload took port %d, want %d", p, cgnattest.PortLo+1)
	}
	if err := d2.ReleaseMapping(cgnat.Key{Addr: cgnattest.SubA, Port: 5000, Proto: 17}); err != nil {
		t.Fatal(err)
	}
	var b datapathCgBlock
	if err := d2.objs.CgBlocks.Lookup(c.BlockID(0, 0), &b); err != nil || b.Used[1] != 1 || b.Bits[1][0] != 2 {
		t.Fatalf("block after the release: used %d bits %#x (%v)", b.Used[1], b.Bits[1][0], err)
	}
}

// TestCGNATFilterChangeKeepsPins: a relay restarted with another
// filtering mode (the permissions map sized otherwise: sizedByConfig)
// loads on the pinned maps instead of refusing them: the established
// mapping made under endpoint-independent filtering translates the same
// after a reload with address-dependent filtering, and back again.
func TestCGNATFilterChangeKeepsPins(t *testing.T) {
	priv.Require(t)
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "relay")
	xc := xlattest.Config(xlattest.RelayAddr)
	c := cgnattest.Config(cgnat.EIF)
	load := func(f cgnat.Filtering) *Datapath {
		t.Helper()
		c.Filter = f
		d, err := Load(xc, Options{PinPath: dir, NoMissLimit: true, NoRefuseLimit: true, CGNAT: c, CGNATMappings: 1 << 12})
		if err != nil {
			t.Fatalf("load with %v filtering on the pins: %v", f, err)
		}
		if err := d.SetFIB(false); err != nil {
			t.Fatal(err)
		}
		return d
	}
	out := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: 5000, Dst: cgnattest.R4, DPort: 53})
	run := func(d *Datapath) []byte {
		t.Helper()
		opts := &ebpf.RunOptions{Data: out, DataOut: make([]byte, len(out)+64)}
		ret, err := d.Program(xlat.RoleRelaySub).Run(opts)
		if err != nil || xlat.Verdict(ret) != xlat.Pass {
			t.Fatalf("subscriber's packet: %v %v", xlat.Verdict(ret), err)
		}
		return opts.DataOut
	}
	d := load(cgnat.EIF)
	if err := d.GrantBlock(cgnattest.SubA, c.BlockID(0, 0)); err != nil {
		t.Fatal(err)
	}
	first := run(d)
	for _, f := range []cgnat.Filtering{cgnat.ADF, cgnat.EIF} {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d = load(f)
		if got := run(d); !bytes.Equal(got, first) {
			t.Fatalf("after a reload with %v filtering the mapping translates otherwise", f)
		}
	}
	d.Close()
}

// TestCGNATWithdrawBlock: what the agent reads and does to take a block
// back: CGNATGrants reads the subscribers' records, CGNATBlockUsed a
// block's taken ports per protocol, and after WithdrawBlock of every
// block a subscriber holds its next new flow takes no port from them
// but goes to the agent (cgnat-no-block), while its established
// mapping still translates.
func TestCGNATWithdrawBlock(t *testing.T) {
	h := newCGHarness(t, cgnat.EIF)
	run := func(in []byte) xlat.Verdict {
		t.Helper()
		ret, err := h.d.Program(xlat.RoleRelaySub).Run(&ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)})
		if err != nil {
			t.Fatal(err)
		}
		return xlat.Verdict(ret)
	}
	udp := func(sport uint16) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: sport, Dst: cgnattest.R4, DPort: 53, Payload: []byte("x")})
	}
	if v := run(udp(5000)); v != xlat.Pass {
		t.Fatalf("first flow: %v", v)
	}
	grants, err := h.d.CGNATGrants()
	if err != nil {
		t.Fatal(err)
	}
	g := grants[cgnattest.SubA]
	if len(g.Blocks) == 0 || g.Spent {
		t.Fatalf("SubA's record read back: %+v (all: %v)", g, grants)
	}
	for sub, sg := range grants {
		if want := h.s.Subs[sub]; want == nil || len(want.Blocks) != len(sg.Blocks) {
			t.Errorf("%v: datapath %v, model %+v", sub, sg.Blocks, want)
		}
	}
	used, err := h.d.CGNATBlockUsed(g.Blocks[0])
	if err != nil || used != [cgnat.Planes]uint32{0, 1, 0} {
		t.Fatalf("first block's count after one UDP mapping: %v %v", used, err)
	}
	for _, id := range g.Blocks {
		if err := h.d.WithdrawBlock(cgnattest.SubA, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.d.WithdrawBlock(cgnattest.SubA, g.Blocks[0]); err == nil {
		t.Fatal("a block withdrawn twice")
	}
	before, _ := h.d.Reasons()
	if v := run(udp(5001)); v != xlat.Drop {
		t.Fatalf("a new flow with every block withdrawn: %v", v)
	}
	after, _ := h.d.Reasons()
	if after[xlat.ReasonCGNATNoBlock] != before[xlat.ReasonCGNATNoBlock]+1 {
		t.Fatal("the new flow did not go to the agent as cgnat-no-block")
	}
	if v := run(udp(5000)); v != xlat.Pass {
		t.Fatalf("the established mapping after the withdrawal: %v", v)
	}
	if used, _ := h.d.CGNATBlockUsed(g.Blocks[0]); used != [cgnat.Planes]uint32{0, 1, 0} {
		t.Fatalf("a withdrawn block's count changed: %v", used)
	}
}
