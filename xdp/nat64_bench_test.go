package xdp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// nat64BenchPaths loads bench64.c's object with benchCGNAT and NAT64 on
// (2001:db8:64::/56, the well-known prefix), grants a block to a NAT44
// subscriber and to a /64, makes one UDP mapping each with a first
// packet, and returns the paths: the restore wrapper alone, then each
// direction of each mapping behind it.
func nat64BenchPaths(tb testing.TB) ([]xdpbench.Path, *Datapath) {
	tb.Helper()
	priv.Require(tb)
	spec, err := loadBenchnat64()
	if err != nil {
		tb.Fatal(err)
	}
	c := benchCGNAT
	c.Inside6 = netip.MustParsePrefix("2001:db8:64::/56")
	opts := Options{CGNAT: c, CGNATMappings: 1 << 12, NoRefuseLimit: true}
	ts, err := configure(spec, xdpbench.Config, opts, nil)
	if err != nil {
		tb.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := fromCollection(coll, xdpbench.Config, c, ts)
	if err != nil {
		coll.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close(); coll.Close() })
	if err := xdpbench.Install(d); err != nil {
		tb.Fatal(err)
	}
	sub6 := netip.MustParseAddr("2001:db8:64:1::10")
	if err := d.GrantBlock(benchSub, 0); err != nil {
		tb.Fatal(err)
	}
	if err := d.GrantBlock(netip.MustParseAddr("2001:db8:64:1::"), 1); err != nil {
		tb.Fatal(err)
	}
	R4 := xlattest.Remote4
	out44 := xdpbench.Packet(17, benchSub, 5000, R4, 53)
	out64 := xlattest.Build(xlattest.Spec{Proto: 17, Src: sub6, SPort: 5000, Dst: xlat.Embed(xlat.WKP, R4), DPort: 53, Payload: make([]byte, 64)})
	for _, in := range [][]byte{out44, out64} {
		ret, err := d.Program(xlat.RoleRelaySub).Run(&ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)})
		if err != nil || xlat.Verdict(ret) != xlat.Pass {
			tb.Fatalf("making a bench mapping: %v %v", xlat.Verdict(ret), err)
		}
	}
	m, err := d.CGNATMappings()
	if err != nil {
		tb.Fatal(err)
	}
	pub44, pub64 := m[cgnat.Key{Addr: benchSub, Port: 5000, Proto: 17}], m[cgnat.Key{Addr: sub6, Port: 5000, Proto: 17}]
	in := func(pub cgnat.Out) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: R4, SPort: 53, Dst: pub.Addr, DPort: pub.Port, Payload: make([]byte, 84)})
	}
	p := func(name string) *ebpf.Program { return coll.Programs[name] }
	paths := []xdpbench.Path{
		{Name: "baseline: empty XDP_PASS", Prog: d.objs.XdpPass, Pkt: out64},
		{Name: "restore alone", Prog: p("bv64_restore"), Pkt: out64},
		{Name: "head moved, restore", Prog: p("bv64_move"), Pkt: out64, Note: "two bpf_xdp_adjust_head more"},
		{Name: "nat44 udp established, out", Prog: p("bv64_sub44"), Pkt: xlattest.Build(xlattest.Spec{Proto: 17, Src: benchSub, SPort: 5000, Dst: R4, DPort: 53, Payload: make([]byte, 84)}), Note: "restore + relay_sub"},
		{Name: "nat44 udp established, in", Prog: p("bv64_ext44"), Pkt: in(pub44), Note: "restore + relay_ext"},
		{Name: "nat64 udp established, out", Prog: p("bv64_sub64"), Pkt: out64, Note: "restore + relay_sub: IPv6 -> IPv4"},
		{Name: "nat64 udp established, in", Prog: p("bv64_ext64"), Pkt: in(pub64), Note: "restore + relay_ext: IPv4 -> IPv6"},
	}
	var progs []*ebpf.Program
	for _, pt := range paths {
		progs = append(progs, pt.Prog)
	}
	holdInDispatcher(tb, progs...)
	return paths, d
}

// nat64Ratios: each NAT64 direction's cost over NAT44's same direction,
// both over the empty program with the wrapper taken off: the restore,
// and for NAT64 the head move back it does too (half of what moving it
// there and back costs).
func nat64Ratios(res []xdpbench.Result) (out, in, out64ns, in64ns, out44ns, in44ns float64) {
	by := map[string]float64{}
	for _, r := range res {
		by[r.Path] = float64(r.PerPkt.Nanoseconds())
	}
	rs := by["restore alone"]
	rs64 := rs + (by["head moved, restore"]-rs)/2
	out44ns, in44ns = by["nat44 udp established, out"]-rs, by["nat44 udp established, in"]-rs
	out64ns, in64ns = by["nat64 udp established, out"]-rs64, by["nat64 udp established, in"]-rs64
	return out64ns / out44ns, in64ns / in44ns, out64ns, in64ns, out44ns, in44ns
}

// BenchmarkNAT64: an established NAT64 mapping's cost per packet, each
// direction, against NAT44's in the same run (BPF_PROG_RUN, costs over
// the restore wrapper). `go test -run '^$' -bench NAT64 ./xdp`
func BenchmarkNAT64(b *testing.B) {
	paths, d := nat64BenchPaths(b)
	for b.Loop() {
		res, err := xdpbench.Run(context.Background(), d.Reasons, paths, 2_000_000, nil)
		if err != nil {
			b.Fatal(err)
		}
		base := res[0].PerPkt
		for _, r := range res {
			b.Logf("%-34s %4d ns  %+4d ns  %d runs  %v", r.Path, r.PerPkt.Nanoseconds(), (r.PerPkt - base).Nanoseconds(), r.Repeats, r.Note)
		}
		out, in, o64, i64, o44, i44 := nat64Ratios(res)
		b.Logf("over the restore: nat64 out %.0f ns, in %.0f ns; nat44 out %.0f ns, in %.0f ns; nat64/nat44 out %.2fx, in %.2fx",
			o64, i64, o44, i44, out, in)
		b.ReportMetric(out, "out-x-nat44")
		b.ReportMetric(in, "in-x-nat44")
	}
}

// TestNAT64BenchPaths: the bench's packets take the paths they are
// named for, every run of them: translated, no reason counted, the
// restore bringing back the same packet each time.
func TestNAT64BenchPaths(t *testing.T) {
	paths, d := nat64BenchPaths(t)
	for i := range paths {
		paths[i].Quota = 2 * xdpbench.Batch
	}
	res, err := xdpbench.Run(context.Background(), d.Reasons, paths, 2*xdpbench.Batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Verdict != xlat.Pass || len(r.Reasons) != 0 {
			t.Errorf("%s: %v, reasons %v", r.Path, r.Verdict, r.Reasons)
		}
	}
}
