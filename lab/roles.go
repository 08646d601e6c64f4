package lab

import "net/netip"

// Role is the part a namespace plays in the topology. Inside a namespace
// the veth towards a neighbour is named after the neighbour's role: in
// edge, "lan" leads to the site host and "cgn" to the upstream CGNAT.
type Role string

// The namespaces of a lab.
const (
	LAN   Role = "lan"   // a host of the site
	Edge  Role = "edge"  // the site's router, where unmap edge runs
	CGN   Role = "cgn"   // the upstream carrier-grade NAT: not ours
	Rogue Role = "rogue" // another customer behind the same CGN address
	Inet  Role = "inet"  // the Internet's router
	Relay Role = "relay" // where unmap relay runs
	Srv4  Role = "srv4"  // an IPv4 server on the Internet
	Srv6  Role = "srv6"  // an IPv6-only server on the Internet
	Sub   Role = "sub"   // a subscriber of the relay's own CGNAT
	Sub6  Role = "sub6"  // an IPv6-only subscriber: NAT64 through the same CGNAT
	// Narrow is an Internet router that inet reaches over a link of
	// NarrowMTU bytes (a tunnel, say), and SrvN an IPv6 server behind it
	// on a full 1500-byte link: a path whose MTU only an ICMPv6 Packet
	// Too Big from a router beyond the relay can tell (the server's TCP
	// MSS says 1500).
	Narrow Role = "narrow"
	SrvN   Role = "srvn"
)

// Roles lists every namespace of a lab in build order.
var Roles = []Role{LAN, Edge, CGN, Rogue, Inet, Relay, Srv4, Srv6, Sub, Sub6, Narrow, SrvN}

// wire is one veth pair: end A in namespace A named B, end B in namespace
// B named A, with optional addresses of each family on both ends.
type wire struct {
	A, B   Role
	Net4   netip.Prefix
	A4, B4 netip.Addr
	Net6   netip.Prefix
	A6, B6 netip.Addr
	MTU    int // of both ends; 0: MTU
}

var wires = []wire{
	{A: Edge, B: LAN, Net4: LANNet, A4: EdgeLANAddr, B4: LANAddr},
	{A: CGN, B: Edge, Net4: EdgeWANNet, A4: CGNEdgeAddr, B4: EdgeWANAddr},
	{A: CGN, B: Rogue, Net4: RogueNet, A4: CGNRogueAddr, B4: RogueAddr},
	{A: Inet, B: CGN, Net4: CGNOutNet, A4: InetCGNAddr, B4: CGNPublic},
	{A: Inet, B: Relay, Net4: RelayNet, A4: InetRelayAddr, B4: RelayAddr,
		Net6: RelayNet6, A6: InetRelay6Addr, B6: Relay6Addr},
	{A: Inet, B: Srv4, Net4: Srv4Net, A4: InetSrv4Addr, B4: Srv4Addr},
	{A: Inet, B: Srv6, Net6: Srv6Net, A6: InetSrv6Addr, B6: Srv6Addr},
	{A: Relay, B: Sub, Net4: SubNet, A4: RelaySubAddr, B4: SubAddr},
	{A: Relay, B: Sub6, Net6: Sub6Net, A6: RelaySub6Addr, B6: Sub6Addr},
	{A: Inet, B: Narrow, Net6: NarrowNet, A6: InetNarrowAddr, B6: NarrowAddr, MTU: NarrowMTU},
	{A: Narrow, B: SrvN, Net6: SrvNNet, A6: NarrowSrvNAddr, B6: SrvNAddr},
}

// hostAddr is an address a namespace has on a veth besides the wire's
// own (Ifname: the neighbour's role): on the wire's subnet, or a /32
// that a route of the neighbour leads to.
type hostAddr struct {
	In, Ifname Role
	Addr       netip.Prefix
}

var hostAddrs = []hostAddr{
	{In: Srv4, Ifname: Inet, Addr: netip.PrefixFrom(Srv4Addr2, 32)},
	{In: Sub, Ifname: Relay, Addr: netip.PrefixFrom(SubAddr2, SubNet.Bits())},
}

// route is a static route in one namespace. A zero Via makes an
// unreachable route (the kernel answers with ICMP unreachable at once,
// rather than loop the packet back to where it came from).
type route struct {
	In  Role
	Dst netip.Prefix
	Via netip.Addr
}

var (
	default4 = netip.MustParsePrefix("0.0.0.0/0")
	default6 = netip.MustParsePrefix("::/0")
)

var routes = []route{
	{In: LAN, Dst: default4, Via: EdgeLANAddr},
	{In: Edge, Dst: default4, Via: CGNEdgeAddr},
	{In: Rogue, Dst: default4, Via: CGNRogueAddr},
	{In: CGN, Dst: default4, Via: InetCGNAddr},
	// The Internet core has no default: unknown destinations are
	// unreachable, and 100.64.0.0/10 is never routed here.
	{In: Inet, Dst: RelayPool4, Via: RelayAddr},
	{In: Inet, Dst: SitePrefixes, Via: Relay6Addr},
	{In: Relay, Dst: default4, Via: InetRelayAddr},
	{In: Relay, Dst: default6, Via: InetRelay6Addr},
	// Before the relay agent runs (the tour without unmap) and for pool
	// addresses no site has, the pools are unreachable here instead of
	// bouncing back to inet. The agent installs its own unreachable route
	// for each site's prefix and public IPv4 (relay/routes.go; a test
	// removes these two to prove it), and its XDP program takes the
	// sites' packets before routing.
	{In: Relay, Dst: RelayPool4},
	{In: Relay, Dst: SitePrefixes},
	{In: Srv4, Dst: default4, Via: InetSrv4Addr},
	{In: Inet, Dst: netip.PrefixFrom(Srv4Addr2, 32), Via: Srv4Addr},
	{In: Srv6, Dst: default6, Via: InetSrv6Addr},
	{In: Sub, Dst: default4, Via: RelaySubAddr},
	{In: Sub6, Dst: default6, Via: RelaySub6Addr},
	{In: Inet, Dst: SrvNNet, Via: NarrowAddr},
	{In: Narrow, Dst: default6, Via: InetNarrowAddr},
	{In: SrvN, Dst: default6, Via: NarrowSrvNAddr},
}

// forwarders route between their links; other namespaces are hosts.
var forwarders = map[Role]struct{ v4, v6 bool }{
	Edge:   {v4: true, v6: true},
	CGN:    {v4: true},
	Inet:   {v4: true, v6: true},
	Relay:  {v4: true, v6: true},
	Narrow: {v6: true},
}

// Interface is one veth end of a namespace as the lab built it.
type Interface struct {
	Name  string         // the neighbour's role
	Peer  Role           // the namespace at the other end
	Addrs []netip.Prefix // addresses with their prefix length; IPv4 first
	MTU   int
}

// Interfaces lists the veths of role's namespace, in build order, with the
// addresses the lab gave them (link-local addresses aside).
func Interfaces(role Role) []Interface {
	var out []Interface
	for _, w := range wires {
		var peer Role
		var a4, a6 netip.Addr
		switch role {
		case w.A:
			peer, a4, a6 = w.B, w.A4, w.A6
		case w.B:
			peer, a4, a6 = w.A, w.B4, w.B6
		default:
			continue
		}
		in := Interface{Name: string(peer), Peer: peer, MTU: w.MTU}
		if in.MTU == 0 {
			in.MTU = MTU
		}
		if a4.IsValid() {
			in.Addrs = append(in.Addrs, netip.PrefixFrom(a4, w.Net4.Bits()))
		}
		if a6.IsValid() {
			in.Addrs = append(in.Addrs, netip.PrefixFrom(a6, w.Net6.Bits()))
		}
		for _, h := range hostAddrs {
			if h.In == role && h.Ifname == peer {
				in.Addrs = append(in.Addrs, h.Addr)
			}
		}
		out = append(out, in)
	}
	return out
}
