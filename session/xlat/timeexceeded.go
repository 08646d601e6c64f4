package xlat

import (
	"encoding/binary"
	"net/netip"
)

// The time exceeded messages the agents send as the routers they are
// where the datapath cannot: the relay for a carrier whose TTL runs out
// there (it is addressed to the relay), the edge for IPv6 from its LAN
// whose hop limit runs out there (its stack has no IPv6 route out).

// TimeExceeded4 is an ICMPv4 time exceeded in transit from `from` to the
// source of IPv4 packet ip, quoting its header and 8 bytes (RFC 792);
// nil if ip is not an IPv4 packet without options.
func TimeExceeded4(from netip.Addr, ip []byte) []byte {
	if !from.Is4() || len(ip) < ipv4Len || ip[0] != 0x45 {
		return nil
	}
	q := ip[:min(len(ip), ipv4Len+8)]
	b := make([]byte, ipv4Len+8+len(q))
	b[0], b[8], b[9] = 0x45, 64, protoICMP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	f := from.As4()
	copy(b[12:16], f[:])
	copy(b[16:20], ip[12:16])
	binary.BigEndian.PutUint16(b[10:], ipv4Csum(b))
	b[20] = 11 // code 0: in transit
	copy(b[28:], q)
	binary.BigEndian.PutUint16(b[22:], ^fold(sumOdd(b[20:])))
	return b
}

// minMTU6 bounds an ICMPv6 error with what it quotes (RFC 4443 2.4 c).
const minMTU6 = 1280

// TimeExceeded6 is an ICMPv6 time exceeded in transit from `from` to the
// source of IPv6 packet ip, quoting as much of it as fits in 1280 bytes;
// nil if ip is not an IPv6 packet.
func TimeExceeded6(from netip.Addr, ip []byte) []byte {
	if !from.Is6() || len(ip) < ipv6Len || ip[0]>>4 != 6 {
		return nil
	}
	q := ip[:min(len(ip), minMTU6-ipv6Len-8)]
	b := make([]byte, ipv6Len+8+len(q))
	b[0], b[6], b[7] = 0x60, protoICMPv6, 64
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(q)))
	f := from.As16()
	copy(b[8:24], f[:])
	copy(b[24:40], ip[8:24])
	b[40] = 3 // code 0: in transit
	copy(b[48:], q)
	var d delta
	pseudo6(&d, b, 8+len(q), true)
	binary.BigEndian.PutUint16(b[42:], ^fold(uint64(d)+sumOdd(b[40:])))
	return b
}

// sumOdd is the ones' complement sum of b, an odd last byte padded with
// a zero (what a quoted packet may end with).
func sumOdd(b []byte) uint64 {
	s := uint64(sum16(b))
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	return s
}
