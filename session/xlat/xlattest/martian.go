package xlattest

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session/xlat"
)

// martianFixtures: ingress filtering (xlat/martian.go, xdp/bpf/martian.h),
// one case per class and family towards a site at the relay (a new flow
// that would otherwise be offered to the edge), the classes on the hit
// path and at the edge, the relay's own and the sites' addresses, and the
// destinations no wire carries.
func martianFixtures() []Fixture {
	var fs []Fixture
	a := netip.MustParseAddr
	drop := func(name string, role xlat.Role, s Spec, r xlat.Reason) {
		fs = append(fs, untouched("martian/"+name, role, Build(s), r))
	}
	// New flows towards the site's IPv6 prefix: sp(...SiteHost, 22) is a
	// miss the relay offers the edge from any ordinary source.
	for _, c := range []struct {
		name string
		src  netip.Addr
		r    xlat.Reason
	}{
		{"unspecified", a("::"), xlat.ReasonDropMartianUnspecified},
		{"loopback", a("::1"), xlat.ReasonDropMartianLoopback},
		{"multicast", a("ff0e::1"), xlat.ReasonDropMartianMulticast},
		{"multicast-link-scope", a("ff02::1"), xlat.ReasonDropMartianMulticast},
		{"link-local", a("fe80::1"), xlat.ReasonDropMartianLinkLocal},
		{"link-local-top-of-range", a("febf:ffff::1"), xlat.ReasonDropMartianLinkLocal},
		{"v4-mapped-loopback", a("::ffff:127.0.0.1"), xlat.ReasonDropMartianMapped},
		{"v4-mapped-public", a("::ffff:203.0.113.99"), xlat.ReasonDropMartianMapped},
		{"v4-compatible", a("::203.0.113.99"), xlat.ReasonDropMartianMapped},
		{"own-site-prefix", a("2001:db8:1::99"), xlat.ReasonDropMartianSite},
		{"other-site-prefix", a("2001:db8:3::5"), xlat.ReasonDropMartianSite},
		{"relay-local-v6", EdgeLocal, xlat.ReasonDropMartianSite}, // the world's local v6 is in the site
	} {
		drop("relay/v6-to-site/"+c.name, rel, sp(6, c.src, 444, SiteHost, 22, 64), c.r)
	}
	// New flows towards the site's public IPv4.
	for _, c := range []struct {
		name string
		src  netip.Addr
		r    xlat.Reason
	}{
		{"this-network", a("0.0.0.0"), xlat.ReasonDropMartianUnspecified},
		{"this-network-host", a("0.1.2.3"), xlat.ReasonDropMartianUnspecified},
		{"loopback", a("127.0.0.1"), xlat.ReasonDropMartianLoopback},
		{"loopback-top", a("127.255.255.254"), xlat.ReasonDropMartianLoopback},
		{"link-local", a("169.254.169.254"), xlat.ReasonDropMartianLinkLocal},
		{"multicast", a("224.0.0.1"), xlat.ReasonDropMartianMulticast},
		{"multicast-top", a("239.255.255.255"), xlat.ReasonDropMartianMulticast},
		{"reserved", a("240.0.0.1"), xlat.ReasonDropMartianReserved},
		{"broadcast", a("255.255.255.255"), xlat.ReasonDropMartianReserved},
		{"site-own-address", SitePub4, xlat.ReasonDropMartianSite},
		{"other-site-address", OtherSitePub, xlat.ReasonDropMartianSite},
		{"relay-carrier-address", RelayAddr, xlat.ReasonDropMartianOwn},
		{"relay-other-address", EdgeWAN, xlat.ReasonDropMartianOwn}, // in the world's local set
	} {
		drop("relay/v4-to-site/"+c.name, rel, sp(6, c.src, 444, SitePub4, 22, 64), c.r)
	}
	// Neighbours of the classes stay ordinary new flows.
	for _, src := range []netip.Addr{a("1.0.0.1"), a("126.255.255.255"), a("128.0.0.1"), a("169.253.255.255"),
		a("169.255.0.1"), a("223.255.255.255")} {
		drop("relay/v4-to-site/ordinary-"+src.String(), rel, sp(6, src, 444, SitePub4, 22, 64), xlat.ReasonMiss)
	}
	for _, src := range []netip.Addr{a("fec0::1"), a("fe7f::1"), a("::1:0:0:1"), a("::fffe:0:1"), a("64:ff9b::1"), a("2001:db8:4::1")} {
		drop("relay/v6-to-site/ordinary-"+src.String(), rel, sp(6, src, 444, SiteHost, 22, 64), xlat.ReasonMiss)
	}
	// A carrier's first packet at the relay from a martian or own address.
	drop("relay/carrier-from-loopback", rel, sp(17, a("127.0.0.1"), 1234, RelayAddr, 30001, 64), xlat.ReasonDropMartianLoopback)
	drop("relay/carrier-from-site-address", rel, sp(17, SitePub4, 1234, RelayAddr, 30001, 64), xlat.ReasonDropMartianSite)
	// New flows whose hop limit runs out: checked before the agent too.
	drop("relay/carrier-ttl-1-from-broadcast", rel, sp(17, a("255.255.255.255"), 1234, RelayAddr, 30001, 1), xlat.ReasonDropMartianReserved)
	drop("edge-lan/new-flow-ttl-1-from-link-local", lan, sp(6, a("fe80::5"), 40001, Remote6, 443, 1), xlat.ReasonDropMartianLinkLocal)

	// The hit path: replies of flows the site named to a martian far end.
	drop("relay/hit-v6-mapped-far-end", rel, sp(6, MartianRemote6, 443, SiteHost, 40002, 64), xlat.ReasonDropMartianMapped)
	drop("relay/hit-v4-loopback-far-end", rel, sp(6, MartianRemote4, 80, SitePub4, 5002, 64), xlat.ReasonDropMartianLoopback)
	drop("edge-wan/hit-v4-loopback-far-end", wan, sp(6, MartianRemote4, 30016, EdgeWAN, 20016, 64), xlat.ReasonDropMartianLoopback)
	// ICMP errors are checked by their outer source, not the packet
	// they quote: one from a loopback "router" about a carrier (edge WAN),
	// one from a link-local and one from a site's address beyond the
	// relay, which would go to the agent.
	o4 := sp(17, EdgeWAN, 20000, RelayAddr, 30000, 60)
	drop("edge-wan/icmp-error-from-loopback", wan, icmpErr(1, a("127.0.0.1"), EdgeWAN, 64, 3, 1, 0, emb(o4, 0)), xlat.ReasonDropMartianLoopback)
	drop("edge-wan/icmp-error-from-own-address", wan, icmpErr(1, EdgeWAN, EdgeWAN, 64, 3, 1, 0, emb(o4, 0)), xlat.ReasonDropMartianOwn)
	o6 := sp(17, SiteHost, 40000, Remote6, 443, 60)
	drop("relay/icmp-error-from-link-local", rel, icmpErr(58, a("fe80::1"), SiteHost, 64, 1, 3, 0, emb(o6, 0)), xlat.ReasonDropMartianLinkLocal)
	drop("relay/icmp-error-from-other-site", rel, icmpErr(58, a("2001:db8:3::1"), SiteHost, 64, 1, 3, 0, emb(o6, 0)), xlat.ReasonDropMartianSite)
	drop("relay/icmp-error-from-mapped", rel, icmpErr(58, a("::ffff:10.0.0.1"), SiteHost, 64, 1, 3, 0, emb(o6, 0)), xlat.ReasonDropMartianMapped)

	// At the edge: a LAN host's new flow from a source it cannot have,
	// and a carrier-range miss at the WAN from martian sources.
	drop("edge-lan/new-flow-from-loopback", lan, sp(6, a("::1"), 40001, Remote6, 443, 64), xlat.ReasonDropMartianLoopback)
	drop("edge-lan/new-flow-from-mapped", lan, sp(6, a("::ffff:192.0.2.10"), 40001, Remote6, 443, 64), xlat.ReasonDropMartianMapped)
	drop("edge-wan/carrier-range-from-reserved", wan, sp(17, a("250.1.2.3"), 30010, EdgeWAN, 25000, 64), xlat.ReasonDropMartianReserved)
	drop("edge-wan/carrier-range-from-this-network", wan, sp(17, a("0.0.0.7"), 30010, EdgeWAN, 25000, 64), xlat.ReasonDropMartianUnspecified)

	// Destinations no wire carries, before any address set is consulted:
	// an IPv6 packet to ::ffff:<the site's IPv4> is not one to the site.
	drop("relay/dst-v4-mapped-site-address", rel, sp(6, Remote6, 444, a("::ffff:198.51.100.50"), 22, 64), xlat.ReasonDropMartianDst)
	drop("relay/dst-v4-compatible", rel, sp(6, Remote6, 444, a("::198.51.100.50"), 22, 64), xlat.ReasonDropMartianDst)
	drop("relay/dst-loopback-v6", rel, sp(6, Remote6, 444, a("::1"), 22, 64), xlat.ReasonDropMartianDst)
	drop("relay/dst-loopback-v4", rel, sp(6, Remote4, 444, a("127.0.0.1"), 22, 64), xlat.ReasonDropMartianDst)
	drop("edge-lan/dst-v4-mapped-router", lan, sp(6, SiteHost, 40001, a("::ffff:100.64.0.2"), 443, 64), xlat.ReasonDropMartianDst)
	drop("edge-lan/dst-unspecified", lan, sp(6, SiteHost, 40001, a("::"), 443, 64), xlat.ReasonDropMartianDst)
	drop("edge-wan/dst-this-network", wan, sp(17, RelayAddr, 30010, a("0.0.0.2"), 25000, 64), xlat.ReasonDropMartianDst)
	// Multicast and link-local destinations are the stack's (parse), so
	// no site is ever offered one, from whatever source.
	drop("relay/dst-multicast-from-martian", rel, sp(17, a("::1"), 444, a("ff0e::1"), 22, 64), xlat.ReasonPassLocal)
	drop("relay/dst-v4-multicast", rel, sp(17, Remote4, 444, a("224.0.0.5"), 22, 64), xlat.ReasonPassLocal)
	// To the relay itself (not unmap's): the stack's, whatever the source,
	// so neighbour discovery's link-local sources keep working.
	drop("relay/to-relay-from-link-local", rel, sp(6, a("fe80::1"), 444, a("2001:db8:9::1"), 22, 64), xlat.ReasonPassNotOurs)
	return fs
}
