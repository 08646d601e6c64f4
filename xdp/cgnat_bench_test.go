package xdp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// The CGNAT's bench: 64 subscribers from 100.64.0.2 with four 512-port
// blocks each (131072 ports a protocol, room for the new-mapping path's
// runs), on six pool addresses beside the bench's carrier address.
var benchCGNAT = cgnat.Config{
	Inside: netip.MustParsePrefix("100.64.0.0/16"), Gateway: netip.MustParseAddr("100.64.0.1"),
	PoolFirst: netip.MustParseAddr("198.51.100.128"), PoolAddrs: 6,
	PortLo: 40960, BlockBits: 9, Blocks: 48,
}

var (
	benchSub    = netip.MustParseAddr("100.64.0.10")
	benchNATPub = netip.MustParseAddr("198.51.100.20")
)

// cgnatBenchPaths loads bench.c's object with the CGNAT, grants the
// blocks, makes the established mappings and a carriers' NAPT pair in the
// flow table, and returns the paths to measure and the counters to read.
func cgnatBenchPaths(tb testing.TB) ([]xdpbench.Path, *Datapath) {
	tb.Helper()
	priv.Require(tb)
	spec, err := loadBenchvar()
	if err != nil {
		tb.Fatal(err)
	}
	opts := Options{CGNAT: benchCGNAT, CGNATMappings: 1 << 18, NoRefuseLimit: true}
	ts, err := configure(spec, xdpbench.Config, opts, nil)
	if err != nil {
		tb.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := fromCollection(coll, xdpbench.Config, benchCGNAT, ts)
	if err != nil {
		coll.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close(); coll.Close() })
	if err := xdpbench.Install(d); err != nil {
		tb.Fatal(err)
	}
	for i := range 64 {
		sub := netip.AddrFrom4([4]byte{100, 64, 0, byte(2 + i)})
		for j := range 4 {
			if err := d.GrantBlock(sub, uint32(4*i+j)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	// The carriers' NAPT of the same shape as a CGNAT mapping, both
	// directions in the flow table: L:5002 <-> P:21000 towards Rm4:80.
	L, Rm4, P := xlattest.LANHost4, xlattest.Remote4, benchNATPub
	for _, kv := range [][2]xlat.Key{
		{{Proto: 17, Src: L, SPort: 5002, Dst: Rm4, DPort: 80}, {Proto: 17, Src: P, SPort: 21000, Dst: Rm4, DPort: 80}},
		{{Proto: 17, Src: Rm4, SPort: 80, Dst: P, DPort: 21000}, {Proto: 17, Src: Rm4, SPort: 80, Dst: L, DPort: 5002}},
	} {
		o := kv[1]
		if err := d.Put(kv[0], xlat.Entry{Action: xlat.ActNAPT44, Proto: 17, Src: o.Src, SPort: o.SPort, Dst: o.Dst, DPort: o.DPort}); err != nil {
			tb.Fatal(err)
		}
	}
	p := func(name string) *ebpf.Program { return coll.Programs[name] }
	R4 := xlattest.Remote4
	// The established mappings, made by a first packet each.
	for _, in := range [][]byte{
		xdpbench.Packet(17, benchSub, 5000, R4, 53),
		xlattest.Build(xlattest.Spec{Proto: 6, Src: benchSub, SPort: 6000, Dst: R4, DPort: 443, TCPFlags: 0x02}),
	} {
		ret, err := d.Program(xlat.RoleRelaySub).Run(&ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)})
		if err != nil || xlat.Verdict(ret) != xlat.Pass {
			tb.Fatalf("making a bench mapping: %v %v", xlat.Verdict(ret), err)
		}
	}
	m, err := d.CGNATMappings()
	if err != nil {
		tb.Fatal(err)
	}
	pub := m[cgnat.Key{Addr: benchSub, Port: 5000, Proto: 17}]
	paths := []xdpbench.Path{
		{Name: "baseline: empty XDP_PASS", Prog: d.objs.XdpPass, Pkt: xdpbench.Packet(17, R4, 53, benchSub, 5000)},
		{Name: "swap alone", Prog: p("bv_swap"), Pkt: xdpbench.Packet(17, R4, 53, benchSub, 5000)},
		{Name: "carrier napt udp (table both ways)", Prog: p("bv_swap_ext"), Pkt: xdpbench.Packet(17, Rm4, 80, L, 5002), Note: "swap + relay_ext, mean of both directions"},
		{Name: "carrier napt udp (table/slot, no swap)", Prog: d.Program(xlat.RoleRelayExt), Pkt: xdpbench.Packet(17, L, 5000, Rm4, 80), Note: "the bench's flip-back pair"},
		{Name: "cgnat udp established", Prog: p("bv_cg_pair"), Pkt: xdpbench.Packet(17, R4, 53, benchSub, 5000), Note: "swap + relay_sub / relay_ext, mean of out and in"},
		{Name: "cgnat tcp established", Prog: p("bv_cg_pair"), Pkt: xdpbench.Packet(6, R4, 443, benchSub, 6000), Note: "swap + relay_sub / relay_ext, mean of out and in"},
		{Name: "restore alone", Prog: p("bv_cg_again"), Pkt: xdpbench.Packet(17, benchSub, 5000, R4, 53)},
		{Name: "cgnat udp established, out only", Prog: p("bv_cg_again_sub"), Pkt: xdpbench.Packet(17, benchSub, 5000, R4, 53), Note: "restore + relay_sub"},
		{Name: "cgnat udp established, in only", Prog: p("bv_cg_again_ext"), Pkt: xdpbench.Packet(17, R4, 53, pub.Addr, pub.Port), Note: "restore + relay_ext"},
		{Name: "restore and next subscriber port", Prog: p("bv_cg_fresh"), Pkt: xdpbench.Packet(17, benchSub, 1, R4, 53)},
		{Name: "cgnat udp new mapping", Prog: p("bv_cg_new"), Pkt: xdpbench.Packet(17, benchSub, 1, R4, 53), Note: "restore + relay_sub, a new mapping each run", Quota: 100_000},
	}
	var progs []*ebpf.Program
	for _, pt := range paths {
		progs = append(progs, pt.Prog)
	}
	holdInDispatcher(tb, progs...)
	return paths, d
}

// cgnatRatios are the CGNAT's figures against the carriers' NAPT of the
// same run: each cost over the empty program, the wrappers' own work
// (swap, restore) taken off both sides.
func cgnatRatios(res []xdpbench.Result) map[string]float64 {
	by := map[string]float64{}
	for _, r := range res {
		by[r.Path] = float64(r.PerPkt.Nanoseconds())
	}
	swap, restore, fresh := by["swap alone"], by["restore alone"], by["restore and next subscriber port"]
	carrier := by["carrier napt udp (table both ways)"] - swap
	return map[string]float64{
		"udp-established":     (by["cgnat udp established"] - swap) / carrier,
		"tcp-established":     (by["cgnat tcp established"] - swap) / carrier,
		"udp-established-out": (by["cgnat udp established, out only"] - restore) / carrier,
		"udp-established-in":  (by["cgnat udp established, in only"] - restore) / carrier,
		"udp-new-mapping":     (by["cgnat udp new mapping"] - fresh) / carrier,
		"carrier-ns":          carrier,
	}
}

// BenchmarkCGNAT: the subscriber path's cost per packet, established
// mapping (outbound and inbound in turn) and new mapping, as ratios of
// the carriers' NAPT measured in the same run (costs over the empty
// program). `go test -run '^$' -bench CGNAT ./xdp`
func BenchmarkCGNAT(b *testing.B) {
	paths, d := cgnatBenchPaths(b)
	for b.Loop() {
		res, err := xdpbench.Run(context.Background(), d.Reasons, paths, 2_000_000, nil)
		if err != nil {
			b.Fatal(err)
		}
		base := res[0].PerPkt
		for _, r := range res {
			b.Logf("%-40s %4d ns  %+4d ns  %d runs  %v", r.Path, r.PerPkt.Nanoseconds(), (r.PerPkt - base).Nanoseconds(), r.Repeats, r.Note)
		}
		q := cgnatRatios(res)
		b.Logf("over the carriers' NAPT (%.0f ns over baseline): udp established %.2fx (out %.2fx, in %.2fx), tcp established %.2fx, udp new mapping %.2fx",
			q["carrier-ns"], q["udp-established"], q["udp-established-out"], q["udp-established-in"], q["tcp-established"], q["udp-new-mapping"])
		for k, v := range q {
			if k != "carrier-ns" {
				b.ReportMetric(v, strings.ReplaceAll(k, "-", "_")+"-x-carrier")
			}
		}
	}
}

// TestCGNATBenchPaths: the bench's packets take the paths they are named
// for: every run translated (no reason counted), and the new-mapping
// path made a mapping each run.
func TestCGNATBenchPaths(t *testing.T) {
	paths, d := cgnatBenchPaths(t)
	for i := range paths {
		paths[i].Quota = 2 * xdpbench.Batch
	}
	res, err := xdpbench.Run(context.Background(), d.Reasons, paths, 2*xdpbench.Batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.CGNATMappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2+2*xdpbench.Batch { // the established two, one a run of the new-mapping path
		t.Errorf("%d mappings after the new-mapping path's %d runs and the two established ones", len(m), 2*xdpbench.Batch)
	}
	for _, r := range res {
		if r.Verdict != xlat.Pass || len(r.Reasons) != 0 {
			t.Errorf("%s: %v, reasons %v", r.Path, r.Verdict, r.Reasons)
		}
	}
	q := cgnatRatios(res)
	if fmt.Sprint(q["udp-established"]) == "NaN" {
		t.Errorf("ratios %v", q)
	}
}
