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
}

// benchBatch is the repeats per BPF_PROG_RUN call. The kernel reuses one
// buffer across repeats, so each bench packet flips between two entries
// (there and back); each translation also decrements the TTL, so a
// packet starting at TTL 255 translates 254 times before the TTL check
// stops it. Calls are repeated until the requested total is reached.
const benchBatch = 254

// Bench loads a datapath with flip-back entries and measures each path
// for at least repeats runs. It needs root (CAP_BPF and CAP_NET_ADMIN).
func Bench(repeats int) ([]BenchResult, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench xdp needs root: it loads BPF programs and runs them with BPF_PROG_RUN")
	}
	d, err := Load(xlat.Config{}, Options{})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := d.SetFIB(false); err != nil {
		return nil, err
	}
	X := xlattest.SiteHost
	pair := func(a xlat.Key, ea xlat.Entry, b xlat.Key, eb xlat.Entry) error {
		if err := d.Put(a, ea); err != nil {
			return err
		}
		return d.Put(b, eb)
	}
	k := func(p uint8, s netip.Addr, sp uint16, t netip.Addr, tp uint16) xlat.Key {
		return xlat.Key{Proto: p, Src: s, SPort: sp, Dst: t, DPort: tp}
	}
	e := func(a xlat.Action, p uint8, s netip.Addr, sp uint16, t netip.Addr, tp uint16) xlat.Entry {
		return xlat.Entry{Action: a, Proto: p, Src: s, SPort: sp, Dst: t, DPort: tp}
	}
	R, E, L, Rm4 := xlattest.Remote6, xlattest.EdgeWAN, xlattest.LANHost4, xlattest.Remote4
	Rl := xlattest.RelayAddr
	for _, p := range []uint8{6, 17} {
		if err := pair(k(p, X, 40000, R, 443), e(xlat.ActXlat64, p, E, 20000, Rl, 30000),
			k(p, E, 20000, Rl, 30000), e(xlat.ActXlat46, p, X, 40000, R, 443)); err != nil {
			return nil, err
		}
		if err := pair(k(p, L, 5000, Rm4, 80), e(xlat.ActNAPT44, p, E, 20008, Rl, 30008),
			k(p, E, 20008, Rl, 30008), e(xlat.ActNAPT44, p, L, 5000, Rm4, 80)); err != nil {
			return nil, err
		}
	}
	if err := pair(k(50, X, 0, R, 0), e(xlat.ActWrap64, 0, E, 20004, Rl, 30004),
		k(17, E, 20004, Rl, 30004), e(xlat.ActUnwrap46, 50, X, 0, R, 0)); err != nil {
		return nil, err
	}
	payload := make([]byte, 64)
	spec := func(p uint8, s netip.Addr, sp uint16, t netip.Addr, tp uint16) []byte {
		return xlattest.Build(xlattest.Spec{Proto: p, Src: s, SPort: sp, Dst: t, DPort: tp, TTL: 255, Payload: payload})
	}
	lan := d.Program(xlat.RoleEdgeLAN)
	paths := []struct {
		name string
		prog *ebpf.Program
		pkt  []byte
		note string
	}{
		{"baseline: empty XDP_PASS", d.objs.XdpPass, spec(6, X, 40000, R, 443), ""},
		{"floor: parse + flow lookup", d.objs.BenchLookup, spec(6, X, 40000, R, 443), "no translation: what any hit costs"},
		{"tcp v6<->v4 established", lan, spec(6, X, 40000, R, 443), "mean of v6->v4 and v4->v6 (alternating)"},
		{"udp v6<->v4 established", lan, spec(17, X, 40000, R, 443), "mean of both directions"},
		{"udp carrier wrap<->unwrap", lan, spec(50, X, 0, R, 0), "mean of wrap and unwrap"},
		{"ipv4 napt tcp", lan, spec(6, L, 5000, Rm4, 80), "both directions NAPT"},
		{"ipv4 napt udp", lan, spec(17, L, 5000, Rm4, 80), "both directions NAPT"},
		{"pass: not ours (ipv4 miss)", lan, spec(6, L, 5001, Rm4, 80), "lookup miss + classification"},
		{"miss to agent ring", lan, spec(6, X, 40001, R, 443), "ring drained between calls; at most 1M runs"},
	}
	// Paths take turns in rounds, and each path's figure is the median of
	// its round means: load from other processes then shifts all paths
	// alike instead of whichever ran at the wrong moment.
	rounds := benchRounds
	if repeats < rounds*benchBatch {
		rounds = 1
	}
	out := make([]BenchResult, len(paths))
	means := make([][]time.Duration, len(paths))
	drains := make([]func() error, len(paths))
	quota := make([]int, len(paths))
	for i, p := range paths {
		out[i] = BenchResult{Path: p.name, Note: p.note, Reasons: map[xlat.Reason]uint64{}}
		quota[i] = repeats
		if p.name == "miss to agent ring" {
			// Reading the records back dominates the wall time here.
			quota[i] = min(repeats, 1_000_000)
			m, err := d.Misses()
			if err != nil {
				return nil, err
			}
			defer m.Close()
			drains[i] = func() error {
				for range benchBatch {
					m.SetDeadline(time.Now().Add(time.Second))
					if _, err := m.Read(); err != nil {
						return err
					}
				}
				return nil
			}
		}
	}
	for range rounds {
		for i, p := range paths {
			before, err := d.Reasons()
			if err != nil {
				return nil, err
			}
			r, err := benchOne(p.prog, p.pkt, quota[i]/rounds, drains[i])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			after, err := d.Reasons()
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
