package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes the relay installs (`ip route show proto
// 210`), so it finds and removes exactly its own and never an operator's.
const RouteProtocol = 210

// The relay's XDP program translates the sites' traffic before routing,
// but passes to the kernel what it cannot translate: fragments, IPv6
// extension headers, IPv4 options, a site's ICMP echo over its public
// IPv4. Addressed to a site's prefix or public IPv4, such a packet would
// follow the relay's default route back to its upstream router, which
// routes the site to the relay: the two would bounce it until its TTL
// ran out. An unreachable route for each site's prefix and public IPv4
// ends it at the relay, with an ICMP unreachable to its sender.
//
// The routes stay when the agent stops: its pinned program goes on
// forwarding, and passing, without it. Each start makes the routes what
// relay.yaml says now, removing those of sites it no longer has.

// siteRoutes are the destinations the relay's unreachable routes cover:
// every site's prefix and public IPv4 (once, when A+P sites share it).
func siteRoutes(sites []Site) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range sites {
		out = append(out, s.Prefix.Masked())
		if s.IPv4.IsValid() {
			out = append(out, netip.PrefixFrom(s.IPv4, 32))
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return slices.Compact(out)
}

// syncRoutes makes the relay's own routes (RouteProtocol, main table)
// exactly want: it removes its routes not wanted and adds those missing.
// A destination the operator already routes (another protocol) is left
// to the operator's route, and logged.
func syncRoutes(h *netlink.Handle, want []netip.Prefix, log *slog.Logger) error {
	var errs []error
	have := map[netip.Prefix]bool{}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(family, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("routes: list: %w", err)
		}
		for _, r := range rs {
			p, ok := prefixOf(r.Dst)
			if ok && slices.Contains(want, p) && r.Type == unix.RTN_UNREACHABLE {
				have[p] = true
				continue
			}
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("routes: remove %v: %w", r.Dst, err))
				continue
			}
			log.Info("route removed", "dst", r.Dst, "why", "no longer a site's")
		}
	}
	for _, p := range want {
		if have[p] {
			continue
		}
		r := unreachable(p)
		err := h.RouteAdd(r)
		if errors.Is(err, unix.EEXIST) {
			log.Warn("site already routed by another route: it must not lead back upstream", "dst", p)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("routes: unreachable %v: %w", p, err))
			continue
		}
		log.Debug("route added", "dst", p, "type", "unreachable", "proto", RouteProtocol)
	}
	return errors.Join(errs...)
}

func unreachable(p netip.Prefix) *netlink.Route {
	family := netlink.FAMILY_V6
	if p.Addr().Is4() {
		family = netlink.FAMILY_V4
	}
	return &netlink.Route{
		Dst:      &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Type:     unix.RTN_UNREACHABLE,
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
		Family:   family,
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}
