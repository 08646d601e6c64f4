package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// BenchResult is one datapath path's cost measured with BPF_PROG_RUN.
type BenchResult struct {
	Path    string
	Repeats int           // program runs measured
	PerPkt  time.Duration // mean kernel-measured time per run (ns resolution)
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
		{"tcp v6<->v4 established", lan, spec(6, X, 40000, R, 443), "mean of v6->v4 and v4->v6 (alternating)"},
		{"udp v6<->v4 established", lan, spec(17, X, 40000, R, 443), "mean of both directions"},
		{"udp carrier wrap<->unwrap", lan, spec(50, X, 0, R, 0), "mean of wrap and unwrap"},
		{"ipv4 napt tcp", lan, spec(6, L, 5000, Rm4, 80), "both directions NAPT"},
		{"ipv4 napt udp", lan, spec(17, L, 5000, Rm4, 80), "both directions NAPT"},
		{"pass: not ours (ipv4 miss)", lan, spec(6, L, 5001, Rm4, 80), "lookup miss + classification"},
		{"miss to agent ring", lan, spec(6, X, 40001, R, 443), "ring drained between calls"},
	}
	var out []BenchResult
	for _, p := range paths {
		var drain func() error
		if p.name == "miss to agent ring" {
			m, err := d.Misses()
			if err != nil {
				return nil, err
			}
			defer m.Close()
			drain = func() error {
				for range benchBatch {
					m.SetDeadline(time.Now().Add(time.Second))
					if _, err := m.Read(); err != nil {
						return err
					}
				}
				return nil
			}
		}
		before, err := d.Reasons()
		if err != nil {
			return nil, err
		}
		r, err := benchOne(p.prog, p.pkt, repeats, drain)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		after, err := d.Reasons()
		if err != nil {
			return nil, err
		}
		r.Reasons = map[xlat.Reason]uint64{}
		for i := range after {
			if n := after[i] - before[i]; n != 0 {
				r.Reasons[xlat.Reason(i)] = n
			}
		}
		r.Path, r.Note = p.name, p.note
		out = append(out, r)
	}
	return out, nil
}

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
