package xdp

import (
	"context"
	"errors"
	"github.com/unmap-dev/unmap/session/cgnat"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// The bench's flip-back pairs of real flows are one carrier key (a slot)
// and one site-side key (the flow table) each, so every translation figure
// is the mean of both kinds of lookup; the carrier-side-only pair is two
// carrier keys.
func TestBenchFlowsUseSlots(t *testing.T) {
	d := &Datapath{cfg: xdpbench.Config}
	slots := 0
	for k := range xdpbench.Flows() {
		if _, ok := d.slotIndex(k); ok && k.Src != xdpbench.NATa && k.Src != xdpbench.NATb {
			slots++
		}
	}
	if n := len(xdpbench.Flows()) - 2; slots != n/2 {
		t.Fatalf("%d of %d bench keys of real flows are carrier keys, want half", slots, n)
	}
	for _, a := range []netip.Addr{xdpbench.NATa, xdpbench.NATb} {
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
	d, err := Load(xdpbench.Config, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if err := xdpbench.Install(d); err != nil {
		b.Fatal(err)
	}
	v, coll := loadBenchVariants(b)
	X, R, E, Rl := xlattest.SiteHost, xlattest.Remote6, xlattest.EdgeWAN, xlattest.RelayAddr
	site6 := xdpbench.Packet(6, X, 40000, R, 443)
	carrier4 := xdpbench.Packet(6, E, 20000, Rl, 30000)
	p := func(name string) *ebpf.Program { return coll.Programs[name] }
	// A NAPT pair whose keys are both site-side keys (flow table): the cost
	// of a site-side direction alone; the bench's carrier-side-only pair
	// (slots both ways) is the carrier side alone.
	A, L, Rm4 := netip.MustParseAddr("198.51.100.20"), xlattest.LANHost4, xlattest.Remote4
	nat := xdpbench.Packet(6, xdpbench.NATa, 1000, Rl, 30010)
	nat4 := xdpbench.Packet(6, L, 5002, Rm4, 80)
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
	paths := []xdpbench.Path{
		{Name: "baseline: empty XDP_PASS", Prog: d.objs.XdpPass, Pkt: site6},
		{Name: "parse ipv6 site packet", Prog: p("bv_parse"), Pkt: site6},
		{Name: "parse ipv4 carrier", Prog: p("bv_parse"), Pkt: carrier4},
		{Name: "ipv6 + per-cpu hash, 40 B key", Prog: p("bv_hash40"), Pkt: site6},
		{Name: "ipv6 + shared hash, 40 B key", Prog: p("bv_hash40_shared"), Pkt: site6},
		{Name: "ipv4 + per-cpu hash, 40 B key", Prog: p("bv_hash40"), Pkt: carrier4},
		{Name: "ipv4 + shared hash, 40 B key", Prog: p("bv_hash40_shared"), Pkt: carrier4},
		{Name: "ipv4 + per-cpu hash, 16 B key", Prog: p("bv_hash16"), Pkt: carrier4},
		{Name: "ipv4 + carrier slot", Prog: p("bv_lookup"), Pkt: carrier4},
		{Name: "ipv6 + flow table", Prog: p("bv_lookup"), Pkt: site6},
		{Name: "ipv4 + flow table", Prog: p("bv_lookup"), Pkt: nat4},
		{Name: "ipv4 + carrier slot + adjust_head x2", Prog: p("bv_adjust"), Pkt: carrier4},
		{Name: "napt tcp, slot both ways", Prog: v.Program(xlat.RoleRelayExt), Pkt: nat},
		{Name: "napt tcp, slot both ways, no martian check", Prog: p("bv_relay_unfiltered"), Pkt: nat},
		{Name: "napt tcp, table both ways", Prog: v.Program(xlat.RoleRelayExt), Pkt: nat4},
		{Name: "napt tcp, table both ways, no martian check", Prog: p("bv_relay_unfiltered"), Pkt: nat4},
		{Name: "tcp v6<->v4 whole path", Prog: d.Program(xlat.RoleEdgeLAN), Pkt: site6},
		{Name: "tcp v6<->v4 whole, no flow counters", Prog: v.Program(xlat.RoleEdgeLAN), Pkt: site6},
		{Name: "tcp v6<->v4 whole, no counters, no martian check", Prog: p("bv_lan_unfiltered"), Pkt: site6},
		{Name: "tcp v6<->v4 relay, no flow counters", Prog: v.Program(xlat.RoleRelayExt), Pkt: site6},
		{Name: "tcp v6<->v4 relay, no counters, no martian check", Prog: p("bv_relay_unfiltered"), Pkt: site6},
	}
	var progs []*ebpf.Program
	for _, p := range paths {
		progs = append(progs, p.Prog)
	}
	holdInDispatcher(b, progs...)
	for b.Loop() {
		res, err := xdpbench.Run(context.Background(), d.Reasons, paths, 1_000_000, nil)
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
	ts, err := configure(spec, xdpbench.Config, Options{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := fromCollection(coll, xdpbench.Config, cgnat.Config{}, ts)
	if err != nil {
		coll.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close(); coll.Close() })
	if err := xdpbench.Install(d); err != nil {
		tb.Fatal(err)
	}
	for k, e := range xdpbench.Flows() {
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
