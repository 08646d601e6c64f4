package bench

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/xdp"
)

// XDP loads a datapath with flip-back entries and measures each path
// for at least repeats runs. It needs root (CAP_BPF and CAP_NET_ADMIN).
func XDP(ctx context.Context, repeats int) ([]xdpbench.Result, error) {
	return XDPProgress(ctx, repeats, nil)
}

// XDPProgress is XDP that calls step, if not nil, before each path's
// turn in each round: a full run takes minutes.
func XDPProgress(ctx context.Context, repeats int, step func(round, rounds int, path string)) ([]xdpbench.Result, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench xdp needs root: it loads BPF programs and runs them with BPF_PROG_RUN")
	}
	// The miss path's bound is on but never reached (a token a
	// nanosecond): the ring path pays for the source's bucket and
	// passes. The path over the bound runs in a datapath of its own.
	d, err := xdp.Load(xdpbench.Config, xdp.Options{MissRate: 1e9, MissBurst: 1 << 20})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := xdpbench.Install(d); err != nil {
		return nil, err
	}
	over, err := overRate()
	if err != nil {
		return nil, err
	}
	defer over.Close()
	X, R, L, Rm4 := xlattest.SiteHost, xlattest.Remote6, xlattest.LANHost4, xlattest.Remote4
	pkt := xdpbench.Packet
	lan := d.Program(xlat.RoleEdgeLAN)
	paths := []xdpbench.Path{
		{Name: "baseline: empty XDP_PASS", Prog: d.PassProgram(), Pkt: pkt(6, X, 40000, R, 443)},
		{Name: "floor: parse + table lookup", Prog: d.LookupProgram(), Pkt: pkt(6, X, 40000, R, 443), Note: "site-side key (flow table), no translation"},
		{Name: "floor: parse + slot lookup", Prog: d.LookupProgram(), Pkt: pkt(6, xlattest.EdgeWAN, 20000, xlattest.RelayAddr, 30000), Note: "carrier key (carriers slot), no translation"},
		{Name: "tcp v6<->v4 established", Prog: lan, Pkt: pkt(6, X, 40000, R, 443), Note: "mean of v6->v4 (table) and v4->v6 (slot)"},
		{Name: "udp v6<->v4 established", Prog: lan, Pkt: pkt(17, X, 40000, R, 443), Note: "mean of both directions"},
		{Name: "udp carrier wrap<->unwrap", Prog: lan, Pkt: pkt(50, X, 0, R, 0), Note: "mean of wrap and unwrap"},
		{Name: "ipv4 napt tcp", Prog: lan, Pkt: pkt(6, L, 5000, Rm4, 80), Note: "both directions NAPT"},
		{Name: "ipv4 napt udp", Prog: lan, Pkt: pkt(17, L, 5000, Rm4, 80), Note: "both directions NAPT"},
		{Name: "ipv4 napt tcp, carrier side only", Prog: lan, Pkt: pkt(6, xdpbench.NATa, 1000, xlattest.RelayAddr, 30010), Note: "a pair of two carrier keys: slot both ways"},
		{Name: "pass: not ours (ipv4 miss)", Prog: lan, Pkt: pkt(6, L, 5001, Rm4, 80), Note: "lookup miss + classification"},
		{Name: "miss over its source's rate", Prog: over.Program(xlat.RoleEdgeLAN), Pkt: pkt(6, X, 40001, R, 443), Note: "default bound, the source's bucket empty", Reasons: over.Reasons},
		{Name: "miss to agent ring", Prog: lan, Pkt: pkt(6, X, 40001, R, 443), Note: "ring drained between calls; at most 1M runs"},
	}
	// Reading the records back dominates the wall time of the miss path.
	miss := &paths[len(paths)-1]
	miss.Quota = min(repeats, 1_000_000)
	m, err := d.Misses()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	miss.Drain = func() error {
		for range xdpbench.Batch {
			m.SetDeadline(time.Now().Add(time.Second))
			if _, err := m.Read(); err != nil {
				return err
			}
		}
		return nil
	}
	return xdpbench.Run(ctx, d.Reasons, paths, repeats, step)
}

// overRate is a datapath with the default miss bound whose bucket for
// the bench's site host (a LAN host: its address) is empty for
// centuries: every miss of it is over the rate, however long the bench
// runs.
func overRate() (*xdp.Datapath, error) {
	d, err := xdp.Load(xdpbench.Config, xdp.Options{})
	if err != nil {
		return nil, err
	}
	if err := d.SetFIB(false); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	if err := d.ExhaustMissBucket(xlattest.SiteHost); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}
