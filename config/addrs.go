package config

import (
	"net/netip"
)

// Unicast says why a is not an address a host can be reached at over
// the Internet or a LAN ("" if it is one): unspecified (0.0.0.0, ::),
// loopback, multicast, the IPv4 limited broadcast, link-local.
func Unicast(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsMulticast():
		return "a multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	}
	return ""
}

// MinCarrierPort is the lowest port a carrier range may hold: the
// system ports below it are the hosts' own services (ssh 22, DNS 53,
// HTTPS 443...), which a datapath that takes every packet to a carrier
// port would swallow, and a NAT maps only ports below it to ports below
// it (RFC 4787 §4.2.1), so the relay could not tell a carrier port from
// a service on the CGNAT's address either.
const MinCarrierPort = 1024
