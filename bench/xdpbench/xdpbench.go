// Package xdpbench is what measuring the XDP datapath with BPF_PROG_RUN
// needs apart from the datapath itself: the bench's configuration, flows
// and packets (built with session/xlat/xlattest), and the runner that
// takes paths in turns. It does not import package xdp, so both `unmap
// bench xdp` (package bench) and xdp's own benchmarks (its _test files,
// which reach the programs a Datapath does not export) use it, while
// package xdp, linked by both agents, links no test fixture.
package xdpbench

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// Result is one datapath path's cost measured with BPF_PROG_RUN.
type Result struct {
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

// Batch is the repeats per BPF_PROG_RUN call. The kernel reuses one
// buffer across repeats, so each bench packet flips between two entries
// (there and back); each translation also decrements the TTL, so a
// packet starting at TTL 255 translates 254 times before the TTL check
// stops it. Calls are repeated until the requested total is reached.
const Batch = 254

// Config is the bench datapath's configuration: the relay's carrier
// address and range, so the carrier direction of each flip-back pair is
// a carrier key (slot) and the other a site-side key (flow table), as at
// either end of a real flow.
var Config = xlattest.Config(xlattest.RelayAddr)

// Table is what Install needs of a datapath (an *xdp.Datapath).
type Table interface {
	SetFIB(on bool) error
	Put(k xlat.Key, e xlat.Entry) error
}

// Install installs the bench flows, each as a flip-back pair: the packet
// one entry makes is the key of the other, which makes it back.
func Install(d Table) error {
	if err := d.SetFIB(false); err != nil {
		return err
	}
	for k, e := range Flows() {
		if err := d.Put(k, e); err != nil {
			return err
		}
	}
	return nil
}

// Flows are the bench's flip-back pairs.
func Flows() map[xlat.Key]xlat.Entry {
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
	f[k(6, NATa, 1000, Rl, 30010)] = e(xlat.ActNAPT44, 6, NATb, 2000, Rl, 30011)
	f[k(6, NATb, 2000, Rl, 30011)] = e(xlat.ActNAPT44, 6, NATa, 1000, Rl, 30010)
	return f
}

// NATa and NATb are the far ends of the carrier-side-only NAPT pair.
var NATa, NATb = netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("198.51.100.21")

// Packet is a bench packet with TTL 255 and 64 bytes of payload.
func Packet(p uint8, s netip.Addr, sp uint16, t netip.Addr, tp uint16) []byte {
	return xlattest.Build(xlattest.Spec{Proto: p, Src: s, SPort: sp, Dst: t, DPort: tp, TTL: 255, Payload: make([]byte, 64)})
}

// Path is one path to measure: a program and the packet that takes the
// path through it.
type Path struct {
	Name  string
	Prog  *ebpf.Program
	Pkt   []byte
	Note  string
	Quota int          // runs, if fewer than asked for
	Drain func() error // after each batch
	// Reasons reads the counters of Prog's datapath, if not the one
	// given to Run.
	Reasons func() ([xlat.NumReasons]uint64, error)
}

// Run measures the paths for at least repeats runs each (or their
// quota). Paths take turns in rounds, and each path's figure is the
// median of its round means: load from other processes then shifts all
// paths alike instead of whichever ran at the wrong moment. reasons reads
// the reason counters the paths' programs count into; step, if not nil,
// is called before each path's turn in each round.
func Run(ctx context.Context, reasons func() ([xlat.NumReasons]uint64, error), paths []Path, repeats int, step func(round, rounds int, path string)) ([]Result, error) {
	rounds := Rounds
	if repeats < rounds*Batch {
		rounds = 1
	}
	out := make([]Result, len(paths))
	means := make([][]time.Duration, len(paths))
	for i, p := range paths {
		out[i] = Result{Path: p.Name, Note: p.Note, Reasons: map[xlat.Reason]uint64{}}
		if p.Quota == 0 {
			paths[i].Quota = repeats
		}
	}
	for round := range rounds {
		for i, p := range paths {
			if err := ctx.Err(); err != nil {
				return nil, err // between turns: a turn is a few seconds at most
			}
			if step != nil {
				step(round+1, rounds, p.Name)
			}
			counted := reasons
			if p.Reasons != nil {
				counted = p.Reasons
			}
			before, err := counted()
			if err != nil {
				return nil, err
			}
			r, err := one(p.Prog, p.Pkt, p.Quota/rounds, p.Drain)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.Name, err)
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

// Rounds is how many turns the paths take.
const Rounds = 10

func one(prog *ebpf.Program, pkt []byte, repeats int, drain func() error) (Result, error) {
	var total time.Duration
	runs := 0
	var ret uint32
	for runs < repeats {
		var d time.Duration
		var err error
		ret, d, err = prog.Benchmark(pkt, Batch, nil)
		if err != nil {
			return Result{}, err
		}
		total += d * Batch
		runs += Batch
		if drain != nil {
			if err := drain(); err != nil {
				return Result{}, fmt.Errorf("drain misses: %w", err)
			}
		}
	}
	return Result{Repeats: runs, PerPkt: total / time.Duration(runs), Verdict: xlat.Verdict(ret)}, nil
}
