// Package portmap is the server side of the port mapping protocols a LAN
// host uses to ask its router for an inbound port: PCP (RFC 6887), NAT-PMP
// (RFC 6886) and UPnP IGD v1 and v2. The protocols share one mapping
// table (Table) and one policy, and reach the datapath through a small
// Backend: the edge's turns a mapping into a dynamic port forward of the
// site's public IPv4 or an inbound allow rule for an IPv6 host.
//
// A mapping service is an attack surface: it listens on the LAN interface
// only (the kernel delivers nothing from other interfaces to its
// sockets), every request is size-bounded, every decoder is fuzzed, and
// every refusal is counted by a named Reason.
package portmap

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Proto is a mapping's transport protocol, by its IANA number (PCP and
// IGDv2 pinholes carry it as such).
type Proto uint8

// The protocols a mapping may name.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Via is the protocol a mapping was asked by.
type Via uint8

// The protocols that make mappings.
const (
	ViaPCP Via = iota + 1
	ViaNATPMP
	ViaUPnP
)

func (v Via) String() string {
	switch v {
	case ViaPCP:
		return "pcp"
	case ViaNATPMP:
		return "nat-pmp"
	case ViaUPnP:
		return "upnp"
	}
	return "unknown"
}

// Filter restricts the remote peers a mapping admits (PCP FILTER, a UPnP
// RemoteHost, a PCP PEER's peer). Port 0 is any port.
type Filter struct {
	Remote netip.Prefix
	Port   uint16
}

// Mapping is one granted mapping. For IPv4, External is a port of the
// backend's public address; for IPv6 it equals Internal: the mapping is a
// pinhole in the router's inbound filter, no address is translated.
type Mapping struct {
	ID          uint32 // the table's handle (UPnP pinhole UniqueID)
	Proto       Proto
	Internal    netip.AddrPort // the LAN host's endpoint
	External    netip.AddrPort // where the Internet reaches it
	Client      netip.Addr     // who asked
	Via         Via
	Nonce       [12]byte // PCP mapping nonce; zero for the others
	Filters     []Filter // empty: any remote
	Description string   // UPnP NewPortMappingDescription
	Expires     time.Time
}

// Admits reports whether an inbound flow from remote may use the mapping.
func (m *Mapping) Admits(remote netip.AddrPort) bool {
	if len(m.Filters) == 0 {
		return true
	}
	for _, f := range m.Filters {
		if f.Remote.Contains(remote.Addr().Unmap()) && (f.Port == 0 || f.Port == remote.Port()) {
			return true
		}
	}
	return false
}

// ErrPortInUse is what a Backend returns when the external port is held
// by something the table does not see (an outbound flow's binding, a
// static forward, the router's own service).
var ErrPortInUse = errors.New("external port in use")

// Backend is where mappings take effect. The table calls it with its
// lock held: implementations must not call back into the table.
type Backend interface {
	// External4 is the public IPv4 that IPv4 mappings are made on, and
	// the range of its ports the backend may give (an A+P share); an
	// invalid address means none is available now.
	External4() (addr netip.Addr, first, last uint16)
	// Add makes m take effect; ErrPortInUse when its external port is
	// taken by something else.
	Add(m Mapping) error
	// Remove undoes Add.
	Remove(m Mapping)
}

// PerClient is a Backend whose public address and ports depend on the
// client asking: the relay's CGNAT, where a subscriber maps ports of its
// own port blocks (cgnat.PortMapper). Its External4 is not used. Such a
// backend admits any remote to a mapping, so the server refuses what
// would narrow one: PCP FILTER options (UNSUPP_OPTION) and PEER requests
// (UNSUPP_OPCODE). It maps IPv4 only: an IPv6 host's request (behind the
// relay's NAT64, an IPv6-only subscriber's) is refused as IPv4Only
// (PCP NOT_AUTHORIZED) before the backend is asked.
type PerClient interface {
	Backend
	// Place4 is where client's IPv4 mapping of internal (proto 0 and
	// no endpoint: any, for the address alone) may go: the public
	// address and the ports to choose from (one port when the endpoint
	// is mapped already, as a NAT with endpoint-independent mapping has
	// one public port per internal endpoint), or why there are none
	// (NoExternal, HostQuota, NoFreePort). The table holds its lock.
	Place4(client netip.Addr, proto Proto, internal netip.AddrPort) (netip.Addr, []PortRange, Reason)
}
