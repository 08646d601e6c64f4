package xdp

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// BenchmarkDatapath reports ns/packet for every path (BPF_PROG_RUN, 10M
// runs each) and the cost over the empty-program baseline of the same run.
func BenchmarkDatapath(b *testing.B) {
	priv.Require(b)
	for b.Loop() {
		res, err := Bench(10_000_000)
		if err != nil {
			b.Fatal(err)
		}
		base := res[0].PerPkt
		for _, r := range res {
			name := strings.NewReplacer(" ", "_", ":", "", "<->", "-", "(", "", ")", "").Replace(r.Path)
			b.ReportMetric(float64(r.PerPkt.Nanoseconds()), name+"-ns/pkt")
			if r.PerPkt != base {
				b.ReportMetric(float64((r.PerPkt - base).Nanoseconds()), name+"-ns-over-baseline")
			}
		}
	}
}

// TestBenchPathsTranslate: the benchmark packets really take the paths
// they are named for (a few runs, checked by verdict and counters).
func TestBenchPathsTranslate(t *testing.T) {
	priv.Require(t)
	res, err := Bench(benchBatch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) < 8 {
		t.Fatalf("%d paths", len(res))
	}
	for _, r := range res {
		want, reason := xlat.Pass, xlat.ReasonNone
		switch {
		case strings.HasPrefix(r.Path, "miss over"):
			want, reason = xlat.Drop, xlat.ReasonDropMissRate
		case strings.HasPrefix(r.Path, "miss"):
			want, reason = xlat.Drop, xlat.ReasonMiss
		case strings.HasPrefix(r.Path, "pass"):
			reason = xlat.ReasonPassNotOurs
		}
		if r.Verdict != want || r.Repeats < benchBatch || r.PerPkt <= 0 {
			t.Errorf("%s: verdict %v after %d runs, %v/pkt", r.Path, r.Verdict, r.Repeats, r.PerPkt)
		}
		// The round means a report shows as spread: the figure is one of them.
		if len(r.Rounds) == 0 || !slices.Contains(r.Rounds, r.PerPkt) {
			t.Errorf("%s: %v/pkt is not one of its round means %v", r.Path, r.PerPkt, r.Rounds)
		}
		switch {
		case strings.HasPrefix(r.Path, "baseline"), strings.HasPrefix(r.Path, "floor"), reason == xlat.ReasonNone:
			if len(r.Reasons) != 0 {
				t.Errorf("%s: not every run translated: %v", r.Path, r.Reasons)
			}
		case r.Reasons[reason] != uint64(r.Repeats) || len(r.Reasons) != 1:
			t.Errorf("%s: reasons %v, want %d x %v", r.Path, r.Reasons, r.Repeats, reason)
		}
	}
}

// The bench's flip-back pairs of real flows are one carrier key (a slot)
// and one site-side key (the flow table) each, so every translation figure
// is the mean of both kinds of lookup; the carrier-side-only pair is two
// carrier keys.
func TestBenchFlowsUseSlots(t *testing.T) {
	d := &Datapath{cfg: benchConfig}
	slots := 0
	for k := range benchFlows() {
		if _, ok := d.slotIndex(k); ok && k.Src != benchNATa && k.Src != benchNATb {
			slots++
		}
	}
	if n := len(benchFlows()) - 2; slots != n/2 {
		t.Fatalf("%d of %d bench keys of real flows are carrier keys, want half", slots, n)
	}
	for _, a := range []netip.Addr{benchNATa, benchNATb} {
		if _, ok := d.slotIndex(xlat.Key{Proto: 6, Src: a, Dst: xlattest.RelayAddr, DPort: 30010}); !ok {
			t.Fatal("carrier-side-only pair is not in slots")
		}
	}
}

// BenchmarkBreakdown takes the established path apart (bpf/bench.c): the
// same packets through parsing alone, parsing plus each kind of lookup,
// and the whole path with and without its per-flow counters, all in one
// run against the empty program. `go test -run '^$' -bench Breakdown ./xdp`
func BenchmarkBreakdown(b *testing.B) {
	priv.Require(b)
	d, err := Load(benchConfig, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if err := benchTables(d); err != nil {
		b.Fatal(err)
	}
	v, coll := loadBenchVariants(b)
	X, R, E, Rl := xlattest.SiteHost, xlattest.Remote6, xlattest.EdgeWAN, xlattest.RelayAddr
	site6 := benchPkt(6, X, 40000, R, 443)
	carrier4 := benchPkt(6, E, 20000, Rl, 30000)
	p := func(name string) *ebpf.Program { return coll.Programs[name] }
	// A NAPT pair whose keys are both site-side keys (flow table): the cost
	// of a site-side direction alone; the bench's carrier-side-only pair
	// (slots both ways) is the carrier side alone.
	A, L, Rm4 := netip.MustParseAddr("198.51.100.20"), xlattest.LANHost4, xlattest.Remote4
	nat := benchPkt(6, benchNATa, 1000, Rl, 30010)
	nat4 := benchPkt(6, L, 5002, Rm4, 80)
	for _, pair := range [][2]xlat.Key{
		{{Proto: 6, Src: L, SPort: 5002, Dst: Rm4, DPort: 80}, {Proto: 6, Src: E, SPort: 21000, Dst: A, DPort: 80}},
	} {
		for i, k := range pair {
			o := pair[1-i]
			if err := v.Put(k, xlat.Entry{Action: xlat.ActNAPT44, Proto: 6, Src: o.Src, SPort: o.SPort, Dst: o.Dst, DPort: o.DPort}); err != nil {
				b.Fatal(err)
			}
		}
	}
	paths := []benchPath{
		{name: "baseline: empty XDP_PASS", prog: d.objs.XdpPass, pkt: site6},
		{name: "parse ipv6 site packet", prog: p("bv_parse"), pkt: site6},
		{name: "parse ipv4 carrier", prog: p("bv_parse"), pkt: carrier4},
		{name: "ipv6 + per-cpu hash, 40 B key", prog: p("bv_hash40"), pkt: site6},
		{name: "ipv6 + shared hash, 40 B key", prog: p("bv_hash40_shared"), pkt: site6},
		{name: "ipv4 + per-cpu hash, 40 B key", prog: p("bv_hash40"), pkt: carrier4},
		{name: "ipv4 + shared hash, 40 B key", prog: p("bv_hash40_shared"), pkt: carrier4},
		{name: "ipv4 + per-cpu hash, 16 B key", prog: p("bv_hash16"), pkt: carrier4},
		{name: "ipv4 + carrier slot", prog: p("bv_lookup"), pkt: carrier4},
		{name: "ipv6 + flow table", prog: p("bv_lookup"), pkt: site6},
		{name: "ipv4 + flow table", prog: p("bv_lookup"), pkt: nat4},
		{name: "ipv4 + carrier slot + adjust_head x2", prog: p("bv_adjust"), pkt: carrier4},
		{name: "napt tcp, slot both ways", prog: v.Program(xlat.RoleRelayExt), pkt: nat},
		{name: "napt tcp, table both ways", prog: v.Program(xlat.RoleRelayExt), pkt: nat4},
		{name: "tcp v6<->v4 whole path", prog: d.Program(xlat.RoleEdgeLAN), pkt: site6},
		{name: "tcp v6<->v4 whole, no flow counters", prog: v.Program(xlat.RoleEdgeLAN), pkt: site6},
	}
	for b.Loop() {
		res, err := runPaths(d.Reasons, paths, 1_000_000, nil)
		if err != nil {
			b.Fatal(err)
		}
		base := res[0].PerPkt
		for _, r := range res {
			if r.Verdict != xlat.Pass { // a lookup that missed measures the wrong thing
				b.Fatalf("%s: %v", r.Path, r.Verdict)
			}
			b.Logf("%-38s %4d ns  %+4d ns  %v", r.Path, r.PerPkt.Nanoseconds(), (r.PerPkt - base).Nanoseconds(), r.Verdict)
			name := strings.NewReplacer(" ", "_", ":", "", "<->", "-", ",", "").Replace(r.Path)
			b.ReportMetric(float64((r.PerPkt - base).Nanoseconds()), name+"-ns-over-baseline")
		}
	}
}

// loadBenchVariants loads bpf/bench.c's object: the datapath without flow
// counters (as a Datapath, tables installed) and the bv_* programs, with
// every table the variants look in holding the bench flows.
func loadBenchVariants(tb testing.TB) (*Datapath, *ebpf.Collection) {
	tb.Helper()
	spec, err := loadBenchvar()
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := configure(spec, benchConfig, Options{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := fromCollection(coll, benchConfig, ts)
	if err != nil {
		coll.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close(); coll.Close() })
	if err := benchTables(d); err != nil {
		tb.Fatal(err)
	}
	for k, e := range benchFlows() {
		ck, err1 := cKey(k)
		ce, err2 := cEntry(e)
		if err := errors.Join(err1, err2); err != nil {
			tb.Fatal(err)
		}
		vals := make([]datapathFlowEntry, mustCPUs(tb))
		for i := range vals {
			vals[i] = ce
		}
		if err := d.objs.Flows.Put(&ck, vals); err != nil { // IPv4 keys too, for bv_hash40
			tb.Fatal(err)
		}
		if err := coll.Maps["bv_flows_shared"].Put(&ck, &ce); err != nil {
			tb.Fatal(err)
		}
		if k.Src.Is4() {
			k4 := benchvarFlowKey4{Proto: ck.Proto, Sport: ck.Sport, Dport: ck.Dport, Saddr: ck.Saddr[0], Daddr: ck.Daddr[0]}
			if err := coll.Maps["bv_flows4"].Put(&k4, make([]benchvarFlowEntry, mustCPUs(tb))); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return d, coll
}

func mustCPUs(tb testing.TB) int {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
