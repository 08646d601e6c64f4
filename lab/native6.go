package lab

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// The native-IPv6 variant (Options.Native6): the site gets IPv6 the way an
// ISP without a CGNAT would give it, routed on every link and translated
// by nothing. It is the limit of the lab, the baseline benchmarks compare
// unmap and tunnels against. IPv4 and its two NATs are unchanged.
var (
	// NativeLANAddr6 is the edge's LAN address in the native variant;
	// the lan host has SiteHost6Addr, both in SitePrefix.
	NativeLANAddr6 = netip.MustParseAddr("2001:db8:5::1")
	// edge—cgn and cgn—inet get IPv6 links of their own.
	NativeWANNet6    = netip.MustParsePrefix("2001:db8:2::/64")
	NativeCGNWAN6    = netip.MustParseAddr("2001:db8:2::1")
	NativeEdgeWAN6   = netip.MustParseAddr("2001:db8:2::2")
	NativeCGNOutNet6 = netip.MustParsePrefix("2001:db8:3::/64")
	NativeInetCGN6   = netip.MustParseAddr("2001:db8:3::1")
	NativeCGN6       = netip.MustParseAddr("2001:db8:3::2")
)

// native6Addrs are the addresses the variant adds: namespace, veth, address.
var native6Addrs = []struct {
	In     Role
	Ifname string
	Addr   netip.Prefix
}{
	{Edge, string(LAN), netip.PrefixFrom(NativeLANAddr6, SitePrefix.Bits())},
	{LAN, string(Edge), netip.PrefixFrom(SiteHost6Addr, SitePrefix.Bits())},
	{CGN, string(Edge), netip.PrefixFrom(NativeCGNWAN6, NativeWANNet6.Bits())},
	{Edge, string(CGN), netip.PrefixFrom(NativeEdgeWAN6, NativeWANNet6.Bits())},
	{Inet, string(CGN), netip.PrefixFrom(NativeInetCGN6, NativeCGNOutNet6.Bits())},
	{CGN, string(Inet), netip.PrefixFrom(NativeCGN6, NativeCGNOutNet6.Bits())},
}

// native6Routes send the site's IPv6 up and down the chain. inet's route
// to SitePrefix is more specific than its route of SitePrefixes to the
// relay, so the relay never sees this traffic.
var native6Routes = []route{
	{In: LAN, Dst: default6, Via: NativeLANAddr6},
	{In: Edge, Dst: default6, Via: NativeCGNWAN6},
	{In: CGN, Dst: default6, Via: NativeInetCGN6},
	{In: CGN, Dst: SitePrefix, Via: NativeEdgeWAN6},
	{In: Inet, Dst: SitePrefix, Via: NativeCGN6},
}

// makeNative6 adds the native-IPv6 variant to a built topology; it does
// nothing unless Options.Native6 is set.
func (l *Lab) makeNative6() error {
	if !l.Options.Native6 {
		return nil
	}
	// cgn forwards IPv4 only in the default topology.
	if err := l.ns[CGN].SetSysctls(Sysctl{"net.ipv6.conf.all.forwarding", "1"}); err != nil {
		return err
	}
	for _, a := range native6Addrs {
		n := l.ns[a.In]
		if err := n.configure(a.Ifname, netip.Prefix{}, netip.Addr{}, a.Addr.Masked(), a.Addr.Addr()); err != nil {
			return fmt.Errorf("native6: %w", err)
		}
	}
	for _, r := range native6Routes {
		n := l.ns[r.In]
		nr := &netlink.Route{Dst: ipNet(r.Dst), Gw: r.Via.AsSlice()}
		if err := n.nl.RouteAdd(nr); err != nil {
			return fmt.Errorf("native6: %s: route %s via %s: %w", n.Name, r.Dst, r.Via, err)
		}
	}
	return nil
}
