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
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// nhLab is a namespace where the edge's IPv4 carriers (to RelayAddr, in
// 203.0.113.0/24) leave by wan through the gateway 100.64.0.1, and a
// datapath with the FIB on whose LAN program sends them; or, for v6, where
// the site's IPv6 hosts (SitePrefix) are reached by wan through the
// gateway 2001:db8:ff::1, and the WAN program sends the carriers it
// translates back to IPv6 toward them (IPv6 output: the nh6_cache).
type nhLab struct {
	t   *testing.T
	h   *netlink.Handle
	wan netlink.Link
	d   *Datapath
	v6  bool
	gw  string // the gateway's address
}

var (
	gwMAC1 = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	gwMAC2 = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 2}
	gwMAC3 = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 3}
)

func newNHLab(t *testing.T, h *netlink.Handle) *nhLab {
	return newNHLabFamily(t, h, false)
}

func newNHLabFamily(t *testing.T, h *netlink.Handle, v6 bool) *nhLab {
	t.Helper()
	// The cache is per CPU: every run on one CPU, or a packet could miss
	// the entry the last one filled on another (inNetns's thread is
	// locked and dies with its goroutine, so the pin goes with it).
	var one unix.CPUSet
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	wan, _ := veth(t, h, "wan0", "wan1")
	l := &nhLab{t: t, h: h, wan: wan, v6: v6}
	if v6 {
		sysctl(t, "net/ipv6/conf/all/forwarding", "1")
		sysctl(t, "net/ipv6/conf/wan0/forwarding", "1")
		addAddr(t, h, wan, "2001:db8:ff::2/64")
		l.gw = "2001:db8:ff::1"
		addNeigh(t, h, wan, l.gw, gwMAC1)
		addRoute(t, h, wan, xlattest.SitePrefix.String(), l.gw)
	} else {
		sysctl(t, "net/ipv4/conf/all/forwarding", "1")
		sysctl(t, "net/ipv4/conf/wan0/forwarding", "1")
		addAddr(t, h, wan, "100.64.0.2/24")
		l.gw = "100.64.0.1"
		addNeigh(t, h, wan, l.gw, gwMAC1)
		addRoute(t, h, wan, "203.0.113.0/24", l.gw)
	}
	d, _ := loadWorld(t, xlattest.Config(xlattest.EdgeWAN), xlattest.World())
	if err := d.SetFIB(true); err != nil {
		t.Fatal(err)
	}
	l.d = d
	return l
}

// send runs the LAN program on a site host's TCP segment to Remote6
// with payload bytes (v6: the WAN program on the relay's carrier segment
// back to the site host, translated to IPv6), arriving on wan (so the
// route sends it back out there: XDP_TX), and returns the verdict and
// the frame's destination MAC.
func (l *nhLab) send(payload int) (xlat.Verdict, net.HardwareAddr) {
	l.t.Helper()
	return l.sendTOS(payload, 0)
}

// sendTOS is send with the packet's TOS (IPv4; copied into the IPv6
// traffic class by the translation).
func (l *nhLab) sendTOS(payload int, tos uint8) (xlat.Verdict, net.HardwareAddr) {
	l.t.Helper()
	sp := xlattest.Spec{Src: xlattest.SiteHost, Dst: xlattest.Remote6, Proto: 6, SPort: 40000, DPort: 443,
		TTL: 64, TOS: tos, Payload: make([]byte, payload)}
	role := xlat.RoleEdgeLAN
	if l.v6 {
		sp.Src, sp.Dst, sp.SPort, sp.DPort = xlattest.RelayAddr, xlattest.EdgeWAN, 30000, 20000
		role = xlat.RoleEdgeWAN
	}
	in := xlattest.Build(sp)
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64),
		Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(l.wan.Attrs().Index)}}
	ret, err := l.d.Program(role).Run(opts)
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
	n := &netlink.Neigh{LinkIndex: l.wan.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP(l.gw), HardwareAddr: mac}
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
// expiry). IPv4 output; TestNextHopBump6 the same for IPv6 output.
func TestNextHopBump(t *testing.T) { testNextHopBump(t, false) }

// TestNextHopBump6: TestNextHopBump for IPv6 output (nh6_cache: the
// edge's WAN program translating a carrier back to IPv6).
func TestNextHopBump6(t *testing.T) { testNextHopBump(t, true) }

func testNextHopBump(t *testing.T, v6 bool) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLabFamily(t, h, v6)
		l.want("first packet", gwMAC1)
		l.want("cached", gwMAC1)
		l.setNeigh(gwMAC2)
		l.bump()
		l.want("new neighbour MAC after a bump", gwMAC2)

		gw3, prefix := "100.64.0.3", "203.0.113.0/24"
		if v6 {
			gw3, prefix = "2001:db8:ff::3", xlattest.SitePrefix.String()
		}
		addNeigh(t, h, l.wan, gw3, gwMAC3)
		_, dst, _ := net.ParseCIDR(prefix)
		if err := h.RouteReplace(&netlink.Route{LinkIndex: l.wan.Attrs().Index, Dst: dst, Gw: net.ParseIP(gw3)}); err != nil {
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
// then the new one once the entry's jiffies expiry passed. IPv4 output.
func TestNextHopExpiry(t *testing.T) { testNextHopExpiry(t, false) }

// TestNextHopExpiry6: TestNextHopExpiry for IPv6 output.
func TestNextHopExpiry6(t *testing.T) { testNextHopExpiry(t, true) }

func testNextHopExpiry(t *testing.T, v6 bool) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLabFamily(t, h, v6)
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
// still passes what it does. IPv4 output.
func TestNextHopMTU(t *testing.T) { testNextHopMTU(t, false) }

// TestNextHopMTU6: TestNextHopMTU for IPv6 output (tot_len there is the
// payload length + 40).
func TestNextHopMTU6(t *testing.T) { testNextHopMTU(t, true) }

func testNextHopMTU(t *testing.T, v6 bool) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLabFamily(t, h, v6)
		// The link's MTU (a route's counts only when locked, or with
		// ip_forward_use_pmtu). IPv4 out: 20 (IPv4) + 20 (TCP) + 1100 >
		// 1000 >= 20 + 20 + 900. IPv6 out (not under 1280): 40 (IPv6) +
		// 20 + 1300 > 1300 >= 40 + 20 + 1200.
		mtu, over, under := 1000, 1100, 900
		if v6 {
			mtu, over, under = 1300, 1300, 1200
		}
		if err := h.LinkSetMTU(l.wan, mtu); err != nil {
			t.Fatal(err)
		}
		l.bump()
		l.want("small packet fills", gwMAC1)
		l.want("small packet cached", gwMAC1)
		before, err := l.d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		if v, mac := l.send(over); v != xlat.Pass {
			t.Errorf("packet over the link's MTU: %v to %v, want the stack (FRAG_NEEDED)", v, mac)
		}
		after, err := l.d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		if n := after[xlat.ReasonPassFIB] - before[xlat.ReasonPassFIB]; n != 1 {
			t.Errorf("pass-fib counted %d, want 1", n)
		}
		// Under the MTU: the real lookup passes it and the entry grows to
		// it.
		for i := range 2 {
			if v, mac := l.send(under); v != xlat.TX || !bytes.Equal(mac, gwMAC1) {
				t.Errorf("packet under the link's MTU (%d): %v to %v", i, v, mac)
			}
		}
		if v, _ := l.send(over); v != xlat.Pass {
			t.Errorf("packet over the MTU after a larger fill: %v, want the stack", v)
		}
	})
}

// TestNextHopKey: the packet's TOS (IPv4 out) or traffic class (IPv6
// out, in flowinfo) is in the cache's key: a rule sends one DSCP by
// another gateway, and packets of one flow alternating between the two
// classes each leave by their own, cached or not (with the field left
// out of the key, the second class would take the first's entry).
func TestNextHopKey(t *testing.T) { testNextHopKey(t, false) }

// TestNextHopKey6: TestNextHopKey for IPv6 output.
func TestNextHopKey6(t *testing.T) { testNextHopKey(t, true) }

func testNextHopKey(t *testing.T, v6 bool) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLabFamily(t, h, v6)
		gw3, prefix, family := "100.64.0.3", "203.0.113.0/24", netlink.FAMILY_V4
		if v6 {
			gw3, prefix, family = "2001:db8:ff::3", xlattest.SitePrefix.String(), netlink.FAMILY_V6
		}
		addNeigh(t, h, l.wan, gw3, gwMAC3)
		_, dst, _ := net.ParseCIDR(prefix)
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.wan.Attrs().Index, Dst: dst, Gw: net.ParseIP(gw3), Table: 100}); err != nil {
			t.Fatal(err)
		}
		r := netlink.NewRule()
		r.Family, r.Tos, r.Table, r.Priority = family, 0x10, 100, 100
		if err := h.RuleAdd(r); err != nil {
			t.Fatal(err)
		}
		l.bump()
		for i := range 3 {
			for _, c := range []struct {
				tos uint8
				mac net.HardwareAddr
			}{{0, gwMAC1}, {0x10, gwMAC3}} {
				if v, got := l.sendTOS(0, c.tos); v != xlat.TX || !bytes.Equal(got, c.mac) {
					t.Fatalf("round %d, tos %#x: %v to %v, want XDP_TX to %v", i, c.tos, v, got, c.mac)
				}
			}
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

// TestRouteWatcherNeighbourChurn: with the real kernel's messages, a
// neighbour moving from reachable to stale with its MAC unchanged (what
// every neighbour of a busy link does within a minute) leaves the
// next-hop caches alone, and a new MAC still bumps them. The test reads
// the kernel's stale message on a socket of its own, then gives the
// watcher 200 ms to act on the same message: a watcher that bumped on it
// fails; one slower than that would pass wrongly, never fail wrongly.
func TestRouteWatcherNeighbourChurn(t *testing.T) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		l := newNHLab(t, h)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w, err := l.d.WatchRoutes(ctx, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		set := func(state int, mac net.HardwareAddr) {
			t.Helper()
			n := &netlink.Neigh{LinkIndex: l.wan.Attrs().Index, State: state, IP: net.ParseIP(l.gw), HardwareAddr: mac}
			if err := h.NeighSet(n); err != nil {
				t.Fatal(err)
			}
		}
		waitBump := func(what string, from uint64) {
			t.Helper()
			deadline := time.Now().Add(2 * time.Second)
			for l.d.RouteStats().Bumps == from {
				if time.Now().After(deadline) {
					t.Fatalf("no bump 2 s after %s", what)
				}
				time.Sleep(time.Millisecond)
			}
		}
		// The watcher never saw this neighbour (made before it started):
		// its first message bumps.
		b := l.d.RouteStats().Bumps
		set(netlink.NUD_REACHABLE, gwMAC1)
		waitBump("the neighbour's first message", b)
		l.want("fill", gwMAC1)

		s, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_NEIGH)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		b = l.d.RouteStats().Bumps
		set(netlink.NUD_STALE, gwMAC1)
		deadline := time.Now().Add(2 * time.Second)
		for seen := false; !seen; {
			if time.Now().After(deadline) {
				t.Fatal("the kernel sent no message for the neighbour turned stale")
			}
			msgs, _, err := s.Receive()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				n, ok := parseNeigh(m.Data)
				seen = seen || (m.Header.Type == unix.RTM_NEWNEIGH && ok && n.state == unix.NUD_STALE)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if got := l.d.RouteStats().Bumps; got != b {
			t.Errorf("%d bumps for a neighbour turned stale with the same MAC, want none", got-b)
		}
		l.want("the cached next hop, still right", gwMAC1)

		b = l.d.RouteStats().Bumps
		set(netlink.NUD_REACHABLE, gwMAC2)
		waitBump("a new MAC", b)
		l.want("after the bump", gwMAC2)
		if s := l.d.RouteStats(); s.WatchErrors != 0 {
			t.Errorf("watch errors %d", s.WatchErrors)
		}
	})
}

// BenchmarkForwardV4: forward()'s cost for IPv4 output with the FIB on,
// in a namespace with a route and a neighbour: the same NAPT pair (both
// directions leave by another port, XDP_REDIRECT) with the FIB off (the
// translation alone), the FIB lookup on every packet, and the next-hop
// cache. `go test -run '^$' -bench ForwardV4 ./xdp`
func BenchmarkForwardV4(b *testing.B) { benchmarkForward(b, false) }

// BenchmarkForwardV6: BenchmarkForwardV4's paths, and in the same run the
// same three for the site's TCP pair (SiteHost:40000 -> Remote6:443 and
// its carrier, through the LAN program): BPF_PROG_RUN's repeats flip that
// pair between its IPv4 output (the carrier) and its IPv6 output (back
// to the site packet), so its figures are the mean of one IPv4 and one
// IPv6 output; the IPv6 output's own is twice the pair's less the NAPT
// pair's (both IPv4 outputs leave by the same route), reported as
// v6-fib-ns and v6-cached-ns. `go test -run '^$' -bench ForwardV6 ./xdp`
func BenchmarkForwardV6(b *testing.B) { benchmarkForward(b, true) }

func benchmarkForward(b *testing.B, v6 bool) {
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
		if v6 {
			// Remote6 by the same port (lo forwards through all/).
			sysctl(b, "net/ipv6/conf/all/forwarding", "1")
			a6, err := netlink.ParseAddr("2001:db8:ff::2/64")
			if err != nil {
				b.Fatal(err)
			}
			a6.Flags = unix.IFA_F_NODAD
			_, dst6, _ := net.ParseCIDR("2001:db8:2::/48")
			if err := errors.Join(h.AddrAdd(wan, a6),
				h.NeighAdd(&netlink.Neigh{LinkIndex: wan.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP("2001:db8:ff::1"), HardwareAddr: gwMAC2}),
				h.RouteAdd(&netlink.Route{LinkIndex: wan.Attrs().Index, Dst: dst6, Gw: net.ParseIP("2001:db8:ff::1")})); err != nil {
				b.Fatal(err)
			}
		}
		pkts := []struct {
			name string
			pkt  []byte
		}{{"napt v4", xdpbench.Packet(6, xdpbench.NATa, 1000, xlattest.RelayAddr, 30010)}}
		if v6 {
			pkts = append(pkts, struct {
				name string
				pkt  []byte
			}{"v6<->v4 pair", xdpbench.Packet(6, xlattest.SiteHost, 40000, xlattest.Remote6, 443)})
		}
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
			for _, p := range pkts {
				paths = append(paths, xdpbench.Path{Name: p.name + ": " + c.name, Prog: d.Program(xlat.RoleEdgeLAN), Pkt: p.pkt, Reasons: d.Reasons})
			}
		}
		n := len(pkts)
		for b.Loop() {
			res, err := xdpbench.Run(context.Background(), nil, paths, 200_000, nil)
			if err != nil {
				b.Fatal(err)
			}
			for i, r := range res {
				want := xlat.Redirect
				if i < n {
					want = xlat.Pass
				}
				if r.Verdict != want {
					b.Fatalf("%s: %v, want %v", r.Path, r.Verdict, want)
				}
				b.Logf("%-50s %4d ns", r.Path, r.PerPkt.Nanoseconds())
			}
			// res[j*n+i]: configuration j, packet i.
			ns := func(j, i int) float64 { return float64(res[j*n+i].PerPkt.Nanoseconds()) }
			b.ReportMetric(ns(1, 0)-ns(0, 0), "fib-ns")
			b.ReportMetric(ns(2, 0)-ns(0, 0), "cached-ns")
			if v6 {
				b.ReportMetric(ns(1, 1)-ns(0, 1), "pair-fib-ns")
				b.ReportMetric(ns(2, 1)-ns(0, 1), "pair-cached-ns")
				b.ReportMetric(2*(ns(1, 1)-ns(0, 1))-(ns(1, 0)-ns(0, 0)), "v6-fib-ns")
				b.ReportMetric(2*(ns(2, 1)-ns(0, 1))-(ns(2, 0)-ns(0, 0)), "v6-cached-ns")
			}
		}
	})
}
