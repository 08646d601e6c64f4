// Package session holds the words both agents share about a flow and the
// carrier that moves it across the upstream CGNAT. Its subpackages hold the
// tables and allocators built on them and the pure-Go reference translator
// that the XDP datapath is tested against.
package session

import (
	"fmt"
	"net/netip"
)

// Proto is an IP protocol number as it appears in the IPv4 protocol field
// or the IPv6 next-header field.
type Proto uint8

// Protocols unmap treats specially; every other number rides a UDP carrier.
const (
	ICMP   Proto = 1
	TCP    Proto = 6
	UDP    Proto = 17
	ICMPv6 Proto = 58
)

func (p Proto) String() string {
	switch p {
	case ICMP:
		return "icmp"
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case ICMPv6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Flow is an end-to-end conversation as the site host sees it. Site is the
// LAN host's address and port (the ICMP echo identifier for echo flows),
// Remote the Internet peer's. Both are IPv6, or both IPv4 (a flow of the
// site's public IPv4).
type Flow struct {
	Proto  Proto
	Site   netip.AddrPort
	Remote netip.AddrPort
}

func (f Flow) String() string { return fmt.Sprintf("%v %v<->%v", f.Proto, f.Site, f.Remote) }

// Carrier is the IPv4 5-tuple that moves one flow across the CGNAT.
// Edge is the edge's WAN address and carrier port E; Relay is the relay's
// address and carrier port R; Public is the CGNAT's public address and
// port C as the relay sees them (its port is learned from the first
// packet, and may change when the CGNAT rebinds).
type Carrier struct {
	Proto  Proto
	Edge   netip.AddrPort
	Relay  netip.AddrPort
	Public netip.AddrPort
}

func (c Carrier) String() string {
	return fmt.Sprintf("%v %v->%v (seen as %v)", c.Proto, c.Edge, c.Relay, c.Public)
}
