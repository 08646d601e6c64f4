package xlat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Role says which interface a program serves; misses are classified by it.
type Role uint8

const (
	RoleEdgeLAN  Role = iota // edge, site side: flows to carriers
	RoleEdgeWAN              // edge, CGNAT side: carriers back to flows
	RoleRelayExt             // relay, Internet side: both directions
	RoleRelaySub             // relay, subscriber side: its CGNAT (session/cgnat)
)

func (r Role) String() string {
	switch r {
	case RoleEdgeLAN:
		return "edge-lan"
	case RoleEdgeWAN:
		return "edge-wan"
	case RoleRelayExt:
		return "relay-ext"
	case RoleRelaySub:
		return "relay-sub"
	}
	return fmt.Sprintf("role-%d", uint8(r))
}

// Action is what a flow entry does to a matching packet. The numbers are
// enum action in xdp/bpf/maps.h.
type Action uint8

const (
	ActNone     Action = iota // invalid: an entry must say what to do
	ActXlat64                 // IPv6 flow -> native IPv4 carrier (20 bytes smaller)
	ActXlat46                 // native IPv4 carrier -> IPv6 flow
	ActNAPT44                 // IPv4 -> IPv4: addresses and ports rewritten
	ActWrap64                 // IPv6 flow -> IPv4 + 8-byte UDP carrier (12 bytes smaller)
	ActUnwrap46               // IPv4 UDP carrier -> IPv6 flow with Entry.Proto next
)

func (a Action) String() string {
	switch a {
	case ActXlat64:
		return "xlat64"
	case ActXlat46:
		return "xlat46"
	case ActNAPT44:
		return "napt44"
	case ActWrap64:
		return "wrap64"
	case ActUnwrap46:
		return "unwrap46"
	}
	return fmt.Sprintf("action-%d", uint8(a))
}

// Verdict is an XDP return code.
type Verdict uint32

const (
	Aborted  Verdict = 0
	Drop     Verdict = 1
	Pass     Verdict = 2
	TX       Verdict = 3
	Redirect Verdict = 4
)

func (v Verdict) String() string {
	switch v {
	case Aborted:
		return "XDP_ABORTED"
	case Drop:
		return "XDP_DROP"
	case Pass:
		return "XDP_PASS"
	case TX:
		return "XDP_TX"
	case Redirect:
		return "XDP_REDIRECT"
	}
	return fmt.Sprintf("XDP_%d", uint32(v))
}

// Key is what a packet is looked up by: its protocol, addresses and ports
// as they are on the wire at ingress. ICMP echo uses its identifier as a
// port: the source port of a request, the destination port of a reply.
// Other protocols have ports 0.
type Key struct {
	Proto        uint8
	Src, Dst     netip.Addr // both IPv4 or both IPv6
	SPort, DPort uint16
}

// KeySize and EntrySize are the C struct sizes (checked at compile time
// on both sides).
const (
	KeySize   = 40
	EntrySize = 56
)

// MarshalBinary encodes k as struct flow_key: family, proto, sport, dport
// (network order), 2 bytes padding, then source and destination in 16
// bytes each (an IPv4 address fills the first 4).
func (k Key) MarshalBinary() ([]byte, error) {
	if !k.Src.IsValid() || !k.Dst.IsValid() || k.Src.Is4() != k.Dst.Is4() {
		return nil, fmt.Errorf("key %v: addresses must both be IPv4 or both IPv6", k)
	}
	b := make([]byte, KeySize)
	b[0] = family(k.Src)
	b[1] = k.Proto
	binary.BigEndian.PutUint16(b[2:], k.SPort)
	binary.BigEndian.PutUint16(b[4:], k.DPort)
	putAddr(b[8:24], k.Src)
	putAddr(b[24:40], k.Dst)
	return b, nil
}

func (k Key) String() string {
	return fmt.Sprintf("proto-%d %v:%d->%v:%d", k.Proto, k.Src, k.SPort, k.Dst, k.DPort)
}

// Entry is what a flow key maps to: the action, the protocol after it, and
// the addresses and ports the packet leaves with. Addresses are IPv4 for
// ActXlat64, ActWrap64 and ActNAPT44 and IPv6 for ActXlat46 and
// ActUnwrap46. Proto is the carrier protocol for ActXlat64 (TCP, UDP,
// ICMP for ICMPv6 echo), the flow protocol for ActXlat46 (TCP, UDP,
// ICMPv6), the next header restored by ActUnwrap46, and unused otherwise.
type Entry struct {
	Action       Action
	Proto        uint8
	Src, Dst     netip.Addr
	SPort, DPort uint16
}

// Validate reports whether the entry's addresses fit its action.
func (e Entry) Validate() error {
	want4 := e.Action == ActXlat64 || e.Action == ActWrap64 || e.Action == ActNAPT44
	switch {
	case e.Action == ActNone || e.Action > ActUnwrap46:
		return errors.New("entry: no valid action")
	case !e.Src.IsValid() || !e.Dst.IsValid():
		return errors.New("entry: addresses missing")
	case e.Src.Is4() != want4 || e.Dst.Is4() != want4:
		return fmt.Errorf("entry: %v needs IPv4=%v addresses", e.Action, want4)
	}
	return nil
}

// MarshalBinary encodes e as struct flow_entry with zero counters:
// action, proto, 2 bytes flags, sport, dport, source and destination in
// 16 bytes each, then the per-CPU packet and byte counters (8 bytes each,
// little-endian as the kernel stores them).
func (e Entry) MarshalBinary() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, EntrySize)
	b[0] = uint8(e.Action)
	b[1] = e.Proto
	binary.BigEndian.PutUint16(b[4:], e.SPort)
	binary.BigEndian.PutUint16(b[6:], e.DPort)
	putAddr(b[8:24], e.Src)
	putAddr(b[24:40], e.Dst)
	return b, nil
}

func (e Entry) String() string {
	return fmt.Sprintf("%v proto-%d %v:%d->%v:%d", e.Action, e.Proto, e.Src, e.SPort, e.Dst, e.DPort)
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// Config is a program's load-time configuration. The zero value is a
// datapath that owns no carrier range: every miss on the WAN and relay
// side passes, as do IPv4 misses on the LAN side.
type Config struct {
	// CarrierAddr is the IPv4 address carriers use at this end: the
	// edge's WAN address or the relay's carrier address.
	CarrierAddr netip.Addr
	// PortLo..PortHi (inclusive) are this end's carrier ports on
	// CarrierAddr; a miss there goes to the agent, any other port passes.
	PortLo, PortHi uint16
	// LANv4ToAgent sends TCP and UDP IPv4 misses on the edge LAN to the
	// agent (the site has a public IPv4 on the relay) instead of passing
	// them to the router's ordinary NAT.
	LANv4ToAgent bool
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.CarrierAddr.IsValid() && !c.CarrierAddr.Is4() {
		return fmt.Errorf("config: carrier address %v is not IPv4", c.CarrierAddr)
	}
	if c.PortLo > c.PortHi {
		return fmt.Errorf("config: carrier port range %d-%d is empty", c.PortLo, c.PortHi)
	}
	if c.PortLo == 0 && c.PortHi != 0 {
		return errors.New("config: carrier port range must not include port 0")
	}
	return nil
}

func (c Config) inRange(p uint16) bool { return p != 0 && p >= c.PortLo && p <= c.PortHi }
