package lab

import "net/netip"

// The addressing plan. Only documentation and shared ranges are used, and
// they exist only inside the lab's namespaces. End-to-end tests use these
// values rather than literals so the plan can change in one place.
var (
	// lan—edge: the site's LAN behind its home router. No IPv6 but
	// link-local yet: SitePrefix will be delegated by the relay.
	LANNet      = netip.MustParsePrefix("192.0.2.0/28")
	EdgeLANAddr = netip.MustParseAddr("192.0.2.1")
	LANAddr     = netip.MustParseAddr("192.0.2.2")

	// edge—cgn: the edge's WAN, inside the ISP's shared address space.
	// No IPv6 on the CGN path: the ISP gives none.
	EdgeWANNet  = netip.MustParsePrefix("100.64.0.0/24")
	CGNEdgeAddr = netip.MustParseAddr("100.64.0.1")
	EdgeWANAddr = netip.MustParseAddr("100.64.0.2")

	// rogue—cgn: another customer of the same ISP, masqueraded to the same
	// public address as the edge (used to prove it cannot hijack carriers).
	RogueNet     = netip.MustParsePrefix("100.64.1.0/24")
	CGNRogueAddr = netip.MustParseAddr("100.64.1.1")
	RogueAddr    = netip.MustParseAddr("100.64.1.2")

	// CGNInside is what the CGN masquerades (RFC 6598 shared space).
	CGNInside = netip.MustParsePrefix("100.64.0.0/10")

	// cgn—inet: the CGN's outside link. CGNPublic is the one address all of
	// the ISP's customers share on the Internet.
	CGNOutNet   = netip.MustParsePrefix("198.51.100.0/30")
	InetCGNAddr = netip.MustParseAddr("198.51.100.1")
	CGNPublic   = netip.MustParseAddr("198.51.100.2")

	// inet—relay, both families.
	RelayNet       = netip.MustParsePrefix("198.51.100.4/30")
	InetRelayAddr  = netip.MustParseAddr("198.51.100.5")
	RelayAddr      = netip.MustParseAddr("198.51.100.6")
	RelayNet6      = netip.MustParsePrefix("2001:db8:1::/64")
	InetRelay6Addr = netip.MustParseAddr("2001:db8:1::1")
	Relay6Addr     = netip.MustParseAddr("2001:db8:1::2")

	// RelayPool4 is the relay's public IPv4 pool and SitePrefixes the
	// IPv6 space it delegates to sites; inet routes both to the relay.
	RelayPool4   = netip.MustParsePrefix("203.0.113.0/24")
	SitePrefixes = netip.MustParsePrefix("2001:db8:5::/48")
	// SiteGrant is what the relay delegates to the lab's site.
	SiteGrant = netip.MustParsePrefix("2001:db8:5::/56")
	// SitePrefix is the prefix the relay will delegate to the lab's site,
	// and SiteHost6 the address the lan host will take from it.
	SitePrefix    = netip.MustParsePrefix("2001:db8:5::/64")
	SiteHost6Addr = netip.MustParseAddr("2001:db8:5::2")
	// SitePublic4 is the site's public IPv4 from the relay's pool: the
	// LAN's IPv4 leaves from it, and ForwardPort of it is forwarded to the
	// LAN host's EchoPort.
	SitePublic4 = netip.MustParseAddr("203.0.113.10")

	// inet—srv4: an IPv4 server on the Internet.
	Srv4Net      = netip.MustParsePrefix("198.51.100.8/30")
	InetSrv4Addr = netip.MustParseAddr("198.51.100.9")
	Srv4Addr     = netip.MustParseAddr("198.51.100.10")
	// Srv4Addr2 is srv4's second address, a /32 on the same link that
	// inet routes to Srv4Addr: the two addresses of the NAT behaviour
	// server (test/natbehave, RFC 5780), for tests that need a second
	// remote address.
	Srv4Addr2 = netip.MustParseAddr("198.51.100.200")

	// inet—srv6: an IPv6-only server on the Internet.
	Srv6Net      = netip.MustParsePrefix("2001:db8:6::/64")
	InetSrv6Addr = netip.MustParseAddr("2001:db8:6::1")
	Srv6Addr     = netip.MustParseAddr("2001:db8:6::2")

	// inet—narrow: a link of NarrowMTU bytes beyond the relay, to a
	// router; narrow—srvn: an IPv6 server behind it, on a 1500-byte link.
	NarrowNet      = netip.MustParsePrefix("2001:db8:14::/64")
	InetNarrowAddr = netip.MustParseAddr("2001:db8:14::1")
	NarrowAddr     = netip.MustParseAddr("2001:db8:14::2")
	SrvNNet        = netip.MustParsePrefix("2001:db8:15::/64")
	NarrowSrvNAddr = netip.MustParseAddr("2001:db8:15::1")
	SrvNAddr       = netip.MustParseAddr("2001:db8:15::2")

	// relay—sub: a subscriber of the relay's own CGNAT.
	SubNet       = netip.MustParsePrefix("100.64.100.0/24")
	RelaySubAddr = netip.MustParseAddr("100.64.100.1")
	SubAddr      = netip.MustParseAddr("100.64.100.2")
	// SubAddr2 is a second subscriber, another address of the sub host
	// (the CGNAT tells subscribers by inside address): the other end of
	// the tour's hairpin rows.
	SubAddr2 = netip.MustParseAddr("100.64.100.200")
	// SubPool4 is the relay's CGNAT pool (relay.yaml's cgnat section),
	// inside RelayPool4 and apart from SitePublic4, and SubPorts the block
	// ports on each of its addresses, apart from RelayCarrierPorts.
	SubPool4 = netip.MustParsePrefix("203.0.113.64/30")

	// relay—sub6: an IPv6-only subscriber of the relay's CGNAT, which
	// reaches IPv4 servers through NAT64: Sub6Inside is relay.yaml's
	// cgnat.inside6 (each /64 a subscriber), Sub6Net sub6's /64 in it,
	// and NAT64Prefix the well-known prefix srv4 is reached at.
	Sub6Inside    = netip.MustParsePrefix("2001:db8:64::/56")
	Sub6Net       = netip.MustParsePrefix("2001:db8:64:1::/64")
	RelaySub6Addr = netip.MustParseAddr("2001:db8:64:1::1")
	Sub6Addr      = netip.MustParseAddr("2001:db8:64:1::2")
	NAT64Prefix   = netip.MustParsePrefix("64:ff9b::/96")
)

// NAT64Addr is IPv4 address a as an IPv6-only subscriber reaches it:
// in NAT64Prefix (RFC 6052, its last 32 bits).
func NAT64Addr(a netip.Addr) netip.Addr {
	b := NAT64Prefix.Addr().As16()
	v := a.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

// ForwardPort is the port of SitePublic4 the edge forwards (TCP and UDP)
// to the LAN host's EchoPort.
const ForwardPort = 8007

// MTU of every veth but inet—narrow: the full Ethernet MTU that unmap
// preserves end to end.
const MTU = 1500

// NarrowMTU is the MTU of the inet—narrow link: path-MTU discovery to
// srvn must find it.
const NarrowMTU = 1400
