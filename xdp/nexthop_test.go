package xdp

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// nhLab is a namespace where the edge's IPv4 carriers (to RelayAddr, in
// 203.0.113.0/24) leave by wan through the gateway 100.64.0.1, and a
// datapath with the FIB on whose LAN program sends them.
type nhLab struct {
	t   *testing.T
	h   *netlink.Handle
	wan netlink.Link
	d   *Datapath
}

var (
	gwMAC1 = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	gwMAC2 = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 2}
	gwMAC3 = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 3}
)

func newNHLab(t *testing.T, h *netlink.Handle) *nhLab {
	t.Helper()
	// The cache is per CPU: every run on one CPU, or a packet could miss
	// the entry the last one filled on another (inNetns's thread is
	// locked and dies with its goroutine, so the pin goes with it).
	var one unix.CPUSet
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	sysctl(t, "net/ipv4/conf/all/forwarding", "1")
	wan, _ := veth(t, h, "wan0", "wan1")
	sysctl(t, "net/ipv4/conf/wan0/forwarding", "1")
	addAddr(t, h, wan, "100.64.0.2/24")
	addNeigh(t, h, wan, "100.64.0.1", gwMAC1)
	addRoute(t, h, wan, "203.0.113.0/24", "100.64.0.1")
	d, _ := loadWorld(t, xlattest.Config(xlattest.EdgeWAN), xlattest.World())
	if err := d.SetFIB(true); err != nil {
		t.Fatal(err)
	}
	return &nhLab{t: t, h: h, wan: wan, d: d}
}

// send runs the LAN program on a site host's TCP segment to Remote6
// with payload bytes, arriving on wan (so the route sends it back out
// there: XDP_TX), and returns the verdict and the frame's destination MAC.
func (l *nhLab) send(payload int) (xlat.Verdict, net.HardwareAddr) {
	l.t.Helper()
	in := xlattest.Build(xlattest.Spec{Src: xlattest.SiteHost, Dst: xlattest.Remote6, Proto: 6, SPort: 40000, DPort: 443,
		TTL: 64, Payload: make([]byte, payload)})
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64),
		Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(l.wan.Attrs().Index)}}
	ret, err := l.d.Program(xlat.RoleEdgeLAN).Run(opts)
	if err != nil {
		l.t.Fatal(err)
	}
	return xlat.Verdict(ret), net.HardwareAddr(opts.DataOut[:6])
}

// want sends a packet and checks it leaves for mac.
func (l *nhLab) want(what string, mac net.HardwareAddr) {
	l.t.Helper()
	v, got := l.send(0)
	if v != xlat.TX || !bytes.Equal(got, mac) {
		l.t.Fatalf("%s: %v to %v, want XDP_TX to %v", what, v, got, mac)
	}
}

func (l *nhLab) setNeigh(mac net.HardwareAddr) {
	l.t.Helper()
	n := &netlink.Neigh{LinkIndex: l.wan.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP("100.64.0.1"), HardwareAddr: mac}
	if err := l.h.NeighSet(n); err != nil {
		l.t.Fatal(err)
	}
}

func (l *nhLab) bump() {
	l.t.Helper()
	if err := l.d.BumpRoutes(); err != nil {
		l.t.Fatal(err)
	}
}

// TestNextHopBump: once a packet filled the cache, a neighbour's new MAC
// and a route's new gateway apply to the very next packet after a bump
// (the generation check; without it the cached MAC would stay up to the
// expiry).
func TestNextHopBump(t *testing.T) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLab(t, h)
		l.want("first packet", gwMAC1)
		l.want("cached", gwMAC1)
		l.setNeigh(gwMAC2)
		l.bump()
		l.want("new neighbour MAC after a bump", gwMAC2)

		addNeigh(t, h, l.wan, "100.64.0.3", gwMAC3)
		_, dst, _ := net.ParseCIDR("203.0.113.0/24")
		if err := h.RouteReplace(&netlink.Route{LinkIndex: l.wan.Attrs().Index, Dst: dst, Gw: net.ParseIP("100.64.0.3")}); err != nil {
			t.Fatal(err)
		}
		l.bump()
		l.want("new gateway after a bump", gwMAC3)
		if s := l.d.RouteStats(); s.Bumps != 2 || s.WatchErrors != 0 {
			t.Errorf("route stats %+v, want 2 bumps and no error", s)
		}
	})
}

// TestNextHopExpiry: with no bump, the cached answer is used (a
// neighbour's new MAC is not seen at once: the cache really answers),
// then the new one once the entry's jiffies expiry passed.
func TestNextHopExpiry(t *testing.T) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLab(t, h)
		// The fill and the next packet must fall within one TTL for the
		// cached answer to be checked; a loaded machine may need tries.
		checked := false
		for try := 0; try < 10 && !checked; try++ {
			old, next := gwMAC1, gwMAC2
			if try%2 == 1 {
				old, next = gwMAC2, gwMAC1
			}
			l.setNeigh(old)
			l.bump()
			start := time.Now()
			l.want("fill", old)
			l.setNeigh(next)
			v, got := l.send(0)
			if time.Since(start) >= NextHopTTL/2 {
				continue
			}
			checked = true
			if v != xlat.TX || !bytes.Equal(got, old) {
				t.Fatalf("no bump, within the TTL: %v to %v, want the cached %v", v, got, old)
			}
			deadline := time.Now().Add(2 * time.Second)
			for {
				v, got := l.send(0)
				if v == xlat.TX && bytes.Equal(got, next) {
					t.Logf("new MAC after %v", time.Since(start))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no bump: still %v to %v 2 s after the change, want %v once the entry expired", v, got, next)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if el := time.Since(start); el < NextHopTTL/2 {
				t.Errorf("new MAC after %v, before the entry could expire", el)
			}
		}
		if !checked {
			t.Fatal("never a fill and a packet within half a TTL")
		}
	})
}

// TestNextHopMTU: a packet larger than the entry's largest known length
// takes the real lookup, whose MTU check still refuses what the link's
// MTU does not carry (FRAG_NEEDED: the stack answers it, pass-fib), and
// still passes what it does.
func TestNextHopMTU(t *testing.T) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLab(t, h)
		// The link's MTU (a route's counts only when locked, or with
		// ip_forward_use_pmtu).
		if err := h.LinkSetMTU(l.wan, 1000); err != nil {
			t.Fatal(err)
		}
		l.bump()
		l.want("small packet fills", gwMAC1)
		l.want("small packet cached", gwMAC1)
		before, err := l.d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		// 20 (IPv4) + 20 (TCP) + 1100 > 1000.
		if v, mac := l.send(1100); v != xlat.Pass {
			t.Errorf("packet over the link's MTU: %v to %v, want the stack (FRAG_NEEDED)", v, mac)
		}
		after, err := l.d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		if n := after[xlat.ReasonPassFIB] - before[xlat.ReasonPassFIB]; n != 1 {
			t.Errorf("pass-fib counted %d, want 1", n)
		}
		// 20 + 20 + 900 <= 1000: the real lookup passes it and the entry
		// grows to it.
		for i := range 2 {
			if v, mac := l.send(900); v != xlat.TX || !bytes.Equal(mac, gwMAC1) {
				t.Errorf("packet under the link's MTU (%d): %v to %v", i, v, mac)
			}
		}
		if v, _ := l.send(1100); v != xlat.Pass {
			t.Errorf("packet over the MTU after a larger fill: %v, want the stack", v)
		}
	})
}

// TestRouteWatcher: the watcher bumps on a real netlink change in the
// namespace it started in, within a deadline, so the next packet sees
// the new MAC; Stop (or the context's end) ends its goroutines.
func TestRouteWatcher(t *testing.T) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLab(t, h)
		g0 := runtime.NumGoroutine()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w, err := l.d.WatchRoutes(ctx, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		l.want("fill", gwMAC1)
		b0 := l.d.RouteStats().Bumps
		l.setNeigh(gwMAC2)
		deadline := time.Now().Add(2 * time.Second)
		for l.d.RouteStats().Bumps == b0 {
			if time.Now().After(deadline) {
				t.Fatal("no bump 2 s after a neighbour change")
			}
			time.Sleep(time.Millisecond)
		}
		l.want("after the watcher's bump", gwMAC2)
		if s := l.d.RouteStats(); s.WatchErrors != 0 {
			t.Errorf("watch errors %d", s.WatchErrors)
		}
		w.Stop()
		// A second watcher, ended by its context.
		w2, err := l.d.WatchRoutes(ctx, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		<-w2.done
		deadline = time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > g0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines after the watchers ended, %d before", runtime.NumGoroutine(), g0)
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// BenchmarkForwardV4: forward()'s cost for IPv4 output with the FIB on,
// in a namespace with a route and a neighbour: the same NAPT pair (both
// directions leave by another port, XDP_REDIRECT) with the FIB off (the
// translation alone), the FIB lookup on every packet, and the next-hop
// cache. `go test -run '^$' -bench ForwardV4 ./xdp`
func BenchmarkForwardV4(b *testing.B) {
	priv.Require(b)
	inNetns(b, func(h *netlink.Handle) {
		// BPF_PROG_RUN's packets arrive on lo: the route leaves by wan,
		// in the devmap (XDP_REDIRECT, not carried out in this mode).
		sysctl(b, "net/ipv4/conf/all/forwarding", "1")
		wan, _ := veth(b, h, "wan0", "wan1")
		a, err := netlink.ParseAddr("100.64.0.2/24")
		if err != nil {
			b.Fatal(err)
		}
		if err := h.AddrAdd(wan, a); err != nil {
			b.Fatal(err)
		}
		if err := h.NeighAdd(&netlink.Neigh{LinkIndex: wan.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP("100.64.0.1"), HardwareAddr: gwMAC1}); err != nil {
			b.Fatal(err)
		}
		_, dst, _ := net.ParseCIDR("203.0.113.0/24")
		if err := h.RouteAdd(&netlink.Route{LinkIndex: wan.Attrs().Index, Dst: dst, Gw: net.ParseIP("100.64.0.1")}); err != nil {
			b.Fatal(err)
		}
		pkt := xdpbench.Packet(6, xdpbench.NATa, 1000, xlattest.RelayAddr, 30010)
		var paths []xdpbench.Path
		for _, c := range []struct {
			name       string
			fib, cache bool
		}{{"fib off (translation alone)", false, false}, {"fib lookup each packet", true, false}, {"fib + next-hop cache", true, true}} {
			d, err := Load(xdpbench.Config, Options{NoMissLimit: true, NoNextHopCache: !c.cache})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			if err := xdpbench.Install(d); err != nil {
				b.Fatal(err)
			}
			if err := errors.Join(d.SetFIB(c.fib), d.AddTXPort(wan.Attrs().Index)); err != nil {
				b.Fatal(err)
			}
			paths = append(paths, xdpbench.Path{Name: c.name, Prog: d.Program(xlat.RoleEdgeLAN), Pkt: pkt, Reasons: d.Reasons})
		}
		for b.Loop() {
			res, err := xdpbench.Run(context.Background(), nil, paths, 200_000, nil)
			if err != nil {
				b.Fatal(err)
			}
			for i, r := range res {
				want := xlat.Redirect
				if i == 0 {
					want = xlat.Pass
				}
				if r.Verdict != want {
					b.Fatalf("%s: %v, want %v", r.Path, r.Verdict, want)
				}
				b.Logf("%-30s %4d ns", r.Path, r.PerPkt.Nanoseconds())
			}
			b.ReportMetric(float64(res[1].PerPkt-res[0].PerPkt), "fib-ns")
			b.ReportMetric(float64(res[2].PerPkt-res[0].PerPkt), "cached-ns")
		}
	})
}
