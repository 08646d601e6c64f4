package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// BenchResult is one datapath path's cost measured with BPF_PROG_RUN.
type BenchResult struct {
	Path    string
	Repeats int           // program runs measured
	PerPkt  time.Duration // median over rounds of the kernel-measured mean per run
	Verdict xlat.Verdict  // verdict of the last run
	Note    string
	// Reasons counted during the path's runs: none on a translation path
	// (every run translated), one per run on the pass and miss paths.
	Reasons map[xlat.Reason]uint64
	// Rounds holds the kernel-measured mean per run of each round, in
	// the order run: PerPkt is their median, their range the spread a
	// report shows.
	Rounds []time.Duration
}

// benchBatch is the repeats per BPF_PROG_RUN call. The kernel reuses one
// buffer across repeats, so each bench packet flips between two entries
// (there and back); each translation also decrements the TTL, so a
// packet starting at TTL 255 translates 254 times before the TTL check
// stops it. Calls are repeated until the requested total is reached.
const benchBatch = 254

// benchConfig is the bench datapath's configuration: the relay's carrier
// address and range, so the carrier direction of each flip-back pair is
// a carrier key (slot) and the other a site-side key (flow table), as at
// either end of a real flow.
var benchConfig = xlattest.Config(xlattest.RelayAddr)

// Bench loads a datapath with flip-back entries and measures each path
// for at least repeats runs. It needs root (CAP_BPF and CAP_NET_ADMIN).
func Bench(repeats int) ([]BenchResult, error) { return BenchProgress(repeats, nil) }

// BenchProgress is Bench that calls step, if not nil, before each path's
// turn in each round: a full run takes minutes.
func BenchProgress(repeats int, step func(round, rounds int, path string)) ([]BenchResult, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench xdp needs root: it loads BPF programs and runs them with BPF_PROG_RUN")
	}
	// The miss path's bound is on but never reached (a token a
	// nanosecond): the ring path pays for the source's bucket and
	// passes. The path over the bound runs in a datapath of its own.
	d, err := Load(benchConfig, Options{MissRate: 1e9, MissBurst: 1 << 20})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := benchTables(d); err != nil {
		return nil, err
	}
	over, err := benchOverRate()
	if err != nil {
		return nil, err
	}
	defer over.Close()
	X, R, L, Rm4 := xlattest.SiteHost, xlattest.Remote6, xlattest.LANHost4, xlattest.Remote4
	lan := d.Program(xlat.RoleEdgeLAN)
	paths := []benchPath{
		{name: "baseline: empty XDP_PASS", prog: d.objs.XdpPass, pkt: benchPkt(6, X, 40000, R, 443)},
		{name: "floor: parse + table lookup", prog: d.objs.BenchLookup, pkt: benchPkt(6, X, 40000, R, 443), note: "site-side key (flow table), no translation"},
		{name: "floor: parse + slot lookup", prog: d.objs.BenchLookup, pkt: benchPkt(6, xlattest.EdgeWAN, 20000, xlattest.RelayAddr, 30000), note: "carrier key (carriers slot), no translation"},
		{name: "tcp v6<->v4 established", prog: lan, pkt: benchPkt(6, X, 40000, R, 443), note: "mean of v6->v4 (table) and v4->v6 (slot)"},
		{name: "udp v6<->v4 established", prog: lan, pkt: benchPkt(17, X, 40000, R, 443), note: "mean of both directions"},
		{name: "udp carrier wrap<->unwrap", prog: lan, pkt: benchPkt(50, X, 0, R, 0), note: "mean of wrap and unwrap"},
		{name: "ipv4 napt tcp", prog: lan, pkt: benchPkt(6, L, 5000, Rm4, 80), note: "both directions NAPT"},
		{name: "ipv4 napt udp", prog: lan, pkt: benchPkt(17, L, 5000, Rm4, 80), note: "both directions NAPT"},
		{name: "ipv4 napt tcp, carrier side only", prog: lan, pkt: benchPkt(6, benchNATa, 1000, xlattest.RelayAddr, 30010), note: "a pair of two carrier keys: slot both ways"},
		{name: "pass: not ours (ipv4 miss)", prog: lan, pkt: benchPkt(6, L, 5001, Rm4, 80), note: "lookup miss + classification"},
		{name: "miss over its source's rate", prog: over.Program(xlat.RoleEdgeLAN), pkt: benchPkt(6, X, 40001, R, 443), note: "default bound, the source's bucket empty", reasons: over.Reasons},
		{name: "miss to agent ring", prog: lan, pkt: benchPkt(6, X, 40001, R, 443), note: "ring drained between calls; at most 1M runs"},
	}
	// Reading the records back dominates the wall time of the miss path.
	miss := &paths[len(paths)-1]
	miss.quota = min(repeats, 1_000_000)
	m, err := d.Misses()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	miss.drain = func() error {
		for range benchBatch {
			m.SetDeadline(time.Now().Add(time.Second))
			if _, err := m.Read(); err != nil {
				return err
			}
		}
		return nil
	}
	return runPaths(d.Reasons, paths, repeats, step)
}

// benchOverRate is a datapath with the default miss bound whose bucket
// for the bench's site host (a LAN host: its address) is empty for centuries: every
// miss of it is over the rate, however long the bench runs.
func benchOverRate() (*Datapath, error) {
	d, err := Load(benchConfig, Options{})
	if err != nil {
		return nil, err
	}
	if err := d.SetFIB(false); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	// A LAN host counts alone; the bucket is full again in 146 years of
	// CLOCK_MONOTONIC.
	src := missSrcOf(netip.PrefixFrom(xlattest.SiteHost, 128))
	full := uint64(1) << 62
	if err := d.objs.MissSrcs.Update(&src, full, ebpf.UpdateAny); err != nil {
		return nil, errors.Join(fmt.Errorf("empty the bench's bucket: %w", err), d.Close())
	}
	return d, nil
}

// benchTables installs the bench flows, each as a flip-back pair: the
// packet one entry makes is the key of the other, which makes it back.
func benchTables(d *Datapath) error {
	if err := d.SetFIB(false); err != nil {
		return err
	}
	for k, e := range benchFlows() {
		if err := d.Put(k, e); err != nil {
			return err
		}
	}
	return nil
}

func benchFlows() map[xlat.Key]xlat.Entry {
	X := xlattest.SiteHost
	k := func(p uint8, s netip.Addr, sp uint16, t netip.Addr, tp uint16) xlat.Key {
		return xlat.Key{Proto: p, Src: s, SPort: sp, Dst: t, DPort: tp}
	}
	e := func(a xlat.Action, p uint8, s netip.Addr, sp uint16, t netip.Addr, tp uint16) xlat.Entry {
		return xlat.Entry{Action: a, Proto: p, Src: s, SPort: sp, Dst: t, DPort: tp}
	}
	R, E, L, Rm4 := xlattest.Remote6, xlattest.EdgeWAN, xlattest.LANHost4, xlattest.Remote4
	Rl := xlattest.RelayAddr
	f := map[xlat.Key]xlat.Entry{}
	for _, p := range []uint8{6, 17} {
		f[k(p, X, 40000, R, 443)] = e(xlat.ActXlat64, p, E, 20000, Rl, 30000)
		f[k(p, E, 20000, Rl, 30000)] = e(xlat.ActXlat46, p, X, 40000, R, 443)
		f[k(p, L, 5000, Rm4, 80)] = e(xlat.ActNAPT44, p, E, 20008, Rl, 30008)
		f[k(p, E, 20008, Rl, 30008)] = e(xlat.ActNAPT44, p, L, 5000, Rm4, 80)
	}
	f[k(50, X, 0, R, 0)] = e(xlat.ActWrap64, 0, E, 20004, Rl, 30004)
	f[k(17, E, 20004, Rl, 30004)] = e(xlat.ActUnwrap46, 50, X, 0, R, 0)
	// Not a real flow: NAPT between two carrier keys, so both directions
	// take the carrier side's lookup (a slot), measuring that side alone.
	f[k(6, benchNATa, 1000, Rl, 30010)] = e(xlat.ActNAPT44, 6, benchNATb, 2000, Rl, 30011)
	f[k(6, benchNATb, 2000, Rl, 30011)] = e(xlat.ActNAPT44, 6, benchNATa, 1000, Rl, 30010)
	return f
}

// The far ends of the carrier-side-only NAPT pair.
var benchNATa, benchNATb = netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("198.51.100.21")

// benchPkt is a bench packet with TTL 255 and 64 bytes of payload.
func benchPkt(p uint8, s netip.Addr, sp uint16, t netip.Addr, tp uint16) []byte {
	return xlattest.Build(xlattest.Spec{Proto: p, Src: s, SPort: sp, Dst: t, DPort: tp, TTL: 255, Payload: make([]byte, 64)})
}

// benchPath is one path to measure: a program and the packet that takes
// the path through it.
type benchPath struct {
	name  string
	prog  *ebpf.Program
	pkt   []byte
	note  string
	quota int          // runs, if fewer than asked for
	drain func() error // after each batch
	// reasons reads the counters of prog's datapath, if not the bench's.
	reasons func() ([xlat.NumReasons]uint64, error)
}

// runPaths measures the paths for at least repeats runs each (or their
// quota). Paths take turns in rounds, and each path's figure is the
// median of its round means: load from other processes then shifts all
// paths alike instead of whichever ran at the wrong moment. reasons reads
// the reason counters the paths' programs count into.
func runPaths(reasons func() ([xlat.NumReasons]uint64, error), paths []benchPath, repeats int, step func(round, rounds int, path string)) ([]BenchResult, error) {
	rounds := benchRounds
	if repeats < rounds*benchBatch {
		rounds = 1
	}
	out := make([]BenchResult, len(paths))
	means := make([][]time.Duration, len(paths))
	for i, p := range paths {
		out[i] = BenchResult{Path: p.name, Note: p.note, Reasons: map[xlat.Reason]uint64{}}
		if p.quota == 0 {
			paths[i].quota = repeats
		}
	}
	for round := range rounds {
		for i, p := range paths {
			if step != nil {
				step(round+1, rounds, p.name)
			}
			counted := reasons
			if p.reasons != nil {
				counted = p.reasons
			}
			before, err := counted()
			if err != nil {
				return nil, err
			}
			r, err := benchOne(p.prog, p.pkt, p.quota/rounds, p.drain)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			after, err := counted()
			if err != nil {
				return nil, err
			}
			for j := range after {
				if n := after[j] - before[j]; n != 0 {
					out[i].Reasons[xlat.Reason(j)] += n
				}
			}
			out[i].Repeats += r.Repeats
			out[i].Verdict = r.Verdict
			means[i] = append(means[i], r.PerPkt)
		}
	}
	for i := range out {
		out[i].Rounds = slices.Clone(means[i])
		slices.Sort(means[i])
		out[i].PerPkt = means[i][len(means[i])/2]
	}
	return out, nil
}

// benchRounds is how many turns the paths take.
const benchRounds = 10

func benchOne(prog *ebpf.Program, pkt []byte, repeats int, drain func() error) (BenchResult, error) {
	var total time.Duration
	runs := 0
	var ret uint32
	for runs < repeats {
		var d time.Duration
		var err error
		ret, d, err = prog.Benchmark(pkt, benchBatch, nil)
		if err != nil {
			return BenchResult{}, err
		}
		total += d * benchBatch
		runs += benchBatch
		if drain != nil {
			if err := drain(); err != nil {
				return BenchResult{}, fmt.Errorf("drain misses: %w", err)
			}
		}
	}
	return BenchResult{Repeats: runs, PerPkt: total / time.Duration(runs), Verdict: xlat.Verdict(ret)}, nil
}
