package proto

import (
	"encoding/binary"
	"net/netip"

	"github.com/unmap-dev/unmap/session"
)

// Hello body: version(1) capabilities(8) site(1+n) previous(8)
// edge_addr(16) want_prefix(17) want_ipv4(16).

func (m *Hello) Length() int { return 1 + 8 + 1 + len(m.Site) + 8 + addrLen + prefixLen + addrLen }

func (m *Hello) Append(b []byte) []byte {
	b = append(b, m.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Capabilities))
	b = append(b, uint8(len(m.Site)))
	b = append(b, m.Site...)
	b = binary.BigEndian.AppendUint64(b, m.Previous)
	b = appendAddr(b, m.EdgeAddr)
	b = appendPrefix(b, m.WantPrefix)
	return appendAddr(b, m.WantIPv4)
}

func parseHello(r *reader) (*Hello, error) {
	m := &Hello{
		Version:      r.u8("version"),
		Capabilities: Capabilities(r.u64("capabilities")),
		Site:         r.str("site", MaxSiteLen),
		Previous:     r.u64("previous"),
		EdgeAddr:     r.addr("edge_addr"),
		WantPrefix:   r.prefix("want_prefix"),
		WantIPv4:     r.addr("want_ipv4"),
	}
	if r.err == nil && m.Site == "" {
		r.fail("site", ErrInvalid)
	}
	if r.err == nil && m.WantIPv4.IsValid() && !m.WantIPv4.Is4() {
		r.fail("want_ipv4", ErrInvalid)
	}
	return m, r.done()
}

// Welcome body: version(1) capabilities(8) session_id(8) prefix(17)
// public_ipv4(16) public_ports(4) timers(24) n_relay_addrs(1)
// relay_addrs(16 each) n_carrier_ranges(1) carrier_ranges(5 each).

const (
	timersLen       = 6 * 4
	carrierRangeLen = 1 + 4
)

func (m *Welcome) Length() int {
	return 1 + 8 + 8 + prefixLen + addrLen + 4 + timersLen +
		1 + len(m.RelayAddrs)*addrLen + 1 + len(m.CarrierRanges)*carrierRangeLen
}

func (m *Welcome) Append(b []byte) []byte {
	b = append(b, m.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Capabilities))
	b = binary.BigEndian.AppendUint64(b, m.SessionID)
	b = appendPrefix(b, m.Prefix)
	b = appendAddr(b, m.PublicIPv4)
	b = appendPorts(b, m.PublicPorts)
	t := &m.Timers
	for _, v := range [...]uint32{t.KeepaliveMS, t.CarrierKeepaliveMS, t.UDPSec, t.TCPEstablishedSec, t.TCPTransitorySec, t.ICMPSec} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	b = append(b, uint8(len(m.RelayAddrs)))
	for _, a := range m.RelayAddrs {
		b = appendAddr(b, a)
	}
	b = append(b, uint8(len(m.CarrierRanges)))
	for _, c := range m.CarrierRanges {
		b = appendPorts(append(b, uint8(c.Proto)), c.Ports)
	}
	return b
}

func parseWelcome(r *reader) (*Welcome, error) {
	m := &Welcome{
		Version:      r.u8("version"),
		Capabilities: Capabilities(r.u64("capabilities")),
		SessionID:    r.u64("session_id"),
		Prefix:       r.prefix("prefix"),
		PublicIPv4:   r.addr("public_ipv4"),
		PublicPorts:  r.ports("public_ports"),
		Timers: Timers{
			KeepaliveMS:        r.u32("timers.keepalive"),
			CarrierKeepaliveMS: r.u32("timers.carrier_keepalive"),
			UDPSec:             r.u32("timers.udp"),
			TCPEstablishedSec:  r.u32("timers.tcp_established"),
			TCPTransitorySec:   r.u32("timers.tcp_transitory"),
			ICMPSec:            r.u32("timers.icmp"),
		},
	}
	if n := r.count("relay_addrs", 1, MaxRelayAddrs, addrLen); n > 0 {
		m.RelayAddrs = make([]netip.Addr, n)
		for i := range m.RelayAddrs {
			if m.RelayAddrs[i] = r.addr("relay_addrs"); r.err == nil && !m.RelayAddrs[i].IsValid() {
				r.fail("relay_addrs", ErrInvalid)
			}
		}
	}
	if n := r.count("carrier_ranges", 1, MaxCarrierRanges, carrierRangeLen); n > 0 {
		m.CarrierRanges = make([]CarrierRange, n)
		for i := range m.CarrierRanges {
			m.CarrierRanges[i] = CarrierRange{Proto: session.Proto(r.u8("carrier_ranges")), Ports: r.ports("carrier_ranges")}
		}
	}
	if r.err == nil && m.SessionID == 0 {
		r.fail("session_id", ErrInvalid)
	}
	if r.err == nil && m.PublicIPv4.IsValid() && !m.PublicIPv4.Is4() {
		r.fail("public_ipv4", ErrInvalid)
	}
	return m, r.done()
}
