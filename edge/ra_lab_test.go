package edge

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/labtest"
)

// TestSLAACFromEdge proves a LAN host takes an address from the edge's
// router advertisements and the edge as its default router, and that the
// edge's last RA on shutdown withdraws both.
func TestSLAACFromEdge(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	edgeNS, lanNS := l.NS(lab.Edge), l.NS(lab.LAN)
	gw := netip.PrefixFrom(lab.SitePrefix.Addr().Next(), 64)
	if err := edgeNS.AddAddr("lan", gw); err != nil {
		t.Fatal(err)
	}
	var adv *Advertiser
	if err := edgeNS.Do(func() (err error) {
		adv, err = NewAdvertiser(RAConfig{Interface: "lan", Prefix: lab.SitePrefix, MTU: 1500}, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- adv.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error { once.Do(func() { cancel(); runErr = <-done }); return runErr }
	t.Cleanup(func() { _ = stop() })

	nl := lanNS.Netlink()
	addr := waitFor(t, "a SLAAC address in "+lab.SitePrefix.String(), func() (netlink.Addr, bool) {
		return siteAddr(t, nl)
	})
	if addr.Flags&unix.IFA_F_DEPRECATED != 0 || addr.PreferedLft == 0 {
		t.Errorf("fresh address %v is deprecated (preferred %d)", addr.IPNet, addr.PreferedLft)
	}
	waitFor(t, "a default route via the edge", func() (netlink.Route, bool) { return defaultRoute6(t, nl) })

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the address deprecated by the final RA", func() (netlink.Addr, bool) {
		a, ok := siteAddr(t, nl)
		return a, ok && a.Flags&unix.IFA_F_DEPRECATED != 0
	})
	waitFor(t, "the default route withdrawn", func() (struct{}, bool) {
		_, ok := defaultRoute6(t, nl)
		return struct{}{}, !ok
	})
	if sent, _ := adv.Counts(); sent < 2 {
		t.Errorf("sent %d RAs, want at least the first and the final one", sent)
	}
}

func siteAddr(t *testing.T, nl *netlink.Handle) (netlink.Addr, bool) {
	addrs, err := nl.AddrList(nil, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		if lab.SitePrefix.Contains(ip) {
			return a, true
		}
	}
	return netlink.Addr{}, false
}

func defaultRoute6(t *testing.T, nl *netlink.Handle) (netlink.Route, bool) {
	routes, err := nl.RouteList(nil, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil && r.Gw.IsLinkLocalUnicast() {
			return r, true
		}
	}
	return netlink.Route{}, false
}

// waitFor polls cond for up to 10 s; RAs and SLAAC are asynchronous.
func waitFor[T any](t *testing.T, what string, cond func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := cond()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
