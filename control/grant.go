package control

import (
	"net/netip"
	"slices"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// checkHello decides whether a Hello's wishes fit the site's grant: a
// wanted prefix must lie inside the granted one, a wanted IPv4 must be the
// granted one.
func checkHello(h *proto.Hello, g *proto.Welcome) proto.Code {
	if h.WantPrefix.IsValid() {
		if !g.Prefix.IsValid() || h.WantPrefix.Bits() < g.Prefix.Bits() || !g.Prefix.Contains(h.WantPrefix.Addr()) {
			return proto.CodePrefixNotGranted
		}
	}
	if h.WantIPv4.IsValid() && h.WantIPv4 != g.PublicIPv4 {
		return proto.CodeAddressNotGranted
	}
	return proto.CodeOK
}

// siteOwns reports whether a flow's site endpoint belongs to the grant:
// an IPv6 address in the delegated prefix, or the public IPv4 with a port
// in its A+P set. This is what stops an edge from using the relay to
// send as another site.
func siteOwns(g *proto.Welcome, site netip.AddrPort) bool {
	a := site.Addr()
	if a.Is6() {
		return g.Prefix.IsValid() && g.Prefix.Contains(a)
	}
	if a != g.PublicIPv4 {
		return false
	}
	p := g.PublicPorts
	return p == (proto.PortRange{}) || (site.Port() >= p.First && site.Port() <= p.Last)
}

// checkFlow decides whether a flow an edge opens or replays is one the
// relay may carry: its site endpoint the grant's (siteOwns), and its
// remote an address a packet may be sent to. A remote in the classes the
// datapath drops as martian (unspecified, loopback, multicast,
// link-local, IPv4 inside IPv6, reserved IPv4) would take a carrier port
// for a flow no packet of which can pass: refused at once instead.
func checkFlow(g *proto.Welcome, f session.Flow) proto.Code {
	if !siteOwns(g, f.Site) {
		return proto.CodeAddressNotGranted
	}
	if xlat.MartianSrc(f.Remote.Addr()) != xlat.ReasonNone {
		return proto.CodeRefused
	}
	return proto.CodeOK
}

// relayPickOK reports whether an R the edge picked is the session's to
// pick: the capability granted, one of the relay's addresses, and a port
// of a reserved range for the carrier's protocol.
func relayPickOK(g *proto.Welcome, carrier session.Proto, r netip.AddrPort) bool {
	if !g.Capabilities.Has(proto.CapEdgeChoosesR) || !slices.Contains(g.RelayAddrs, r.Addr()) {
		return false
	}
	for _, cr := range g.CarrierRanges {
		if cr.Proto == carrier && r.Port() >= cr.Ports.First && r.Port() <= cr.Ports.Last {
			return true
		}
	}
	return false
}
