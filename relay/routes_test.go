package relay

import (
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/test/priv"
)

// scratchNetlink is a netlink handle on a new, empty network namespace
// of the test's own, gone when the handle closes.
func scratchNetlink(t *testing.T) *netlink.Handle {
	t.Helper()
	priv.Require(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // this thread is in it now
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if serr := netns.Set(orig); serr != nil {
		panic(serr) // a thread left in the scratch namespace must not run on
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// ownRoutes lists the relay's routes in h, as prefixes.
func ownRoutes(t *testing.T, h *netlink.Handle) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(family, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Type != unix.RTN_UNREACHABLE {
				t.Errorf("route %v is type %d, want unreachable", r.Dst, r.Type)
			}
			p, _ := prefixOf(r.Dst)
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// TestSyncRoutes: the relay installs an unreachable route for each site's
// prefix and public IPv4 (once for A+P sites sharing it), removes its own
// routes of sites relay.yaml no longer has at the next start, and never
// touches an operator's route, even to a site's destination.
func TestSyncRoutes(t *testing.T) {
	h := scratchNetlink(t)
	log := slog.New(slog.DiscardHandler)
	p := netip.MustParsePrefix
	sites := []Site{
		{ID: "a", Prefix: p("2001:db8:5::/56"), IPv4: netip.MustParseAddr("203.0.113.10")},
		{ID: "b", Prefix: p("2001:db8:6::/56"), IPv4: netip.MustParseAddr("203.0.113.10")},
		{ID: "c", Prefix: p("2001:db8:7::/48")},
	}
	// The operator's own route to site c's prefix, and to elsewhere.
	operator := []*netlink.Route{
		{Dst: &net.IPNet{IP: net.ParseIP("2001:db8:7::"), Mask: net.CIDRMask(48, 128)}, Type: unix.RTN_BLACKHOLE, Protocol: unix.RTPROT_STATIC},
		{Dst: &net.IPNet{IP: net.ParseIP("192.0.2.0").To4(), Mask: net.CIDRMask(24, 32)}, Type: unix.RTN_UNREACHABLE, Protocol: unix.RTPROT_STATIC},
	}
	for _, r := range operator {
		if err := h.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := syncRoutes(h, siteRoutes(sites), log); err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{p("203.0.113.10/32"), p("2001:db8:5::/56"), p("2001:db8:6::/56")}
	if got := ownRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("routes after the first start %v, want %v", got, want)
	}
	// Again, unchanged: nothing to do, nothing doubled.
	if err := syncRoutes(h, siteRoutes(sites), log); err != nil {
		t.Fatal(err)
	}
	if got := ownRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("routes after a restart %v, want %v", got, want)
	}
	// Site b goes (its IPv4 stays, a's); site a loses its IPv4.
	sites = []Site{{ID: "a", Prefix: p("2001:db8:5::/56")}, sites[2]}
	if err := syncRoutes(h, siteRoutes(sites), log); err != nil {
		t.Fatal(err)
	}
	want = []netip.Prefix{p("2001:db8:5::/56")}
	if got := ownRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("routes after a changed relay.yaml %v, want %v", got, want)
	}
	for _, r := range operator {
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Dst: r.Dst, Protocol: unix.RTPROT_STATIC}, netlink.RT_FILTER_DST|netlink.RT_FILTER_PROTOCOL)
		if err != nil || len(rs) != 1 || rs[0].Type != r.Type {
			t.Errorf("operator's route %v: %v %v", r.Dst, rs, err)
		}
	}
}
