// Package handshake holds the pieces of the inbound TCP carrier handshake
// that both agents share: reading a TCP segment's header from a packet the
// datapath handed over, and building the segments the handshake adds (the
// SYN to the LAN host, the carrier SYN, the relay's SYN/ACK to the CGNAT,
// the host's SYN/ACK to the remote, the edge's completing ACK), for either
// IP family, checksums included.
//
// The handshake (proto/SPEC.md, "Inbound flow offer"):
//
//	remote SYN ──relay──control──▶ edge ──▶ host           (Segment of the offer)
//	host SYN/ACK ──▶ edge: carrier SYN E→R, same ISN and options
//	relay: SYN/ACK R→C to the CGNAT (the remote's ISN and options),
//	       the host's SYN/ACK to the remote
//	edge: ACK E→R completes the CGNAT's view; the relay consumes it
//
// so the carrier's sequence numbers are the flow's in both directions.
package handshake

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// TCP flags as in byte 13 of the header.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	URG = 0x20
	ECE = 0x40
	CWR = 0x80
)

const (
	minHeader = 20
	maxHeader = 60
	ipv4Len   = 20
	ipv6Len   = 40
	ethLen    = 14
	protoTCP  = 6
)

// Why a segment could not be read.
var (
	ErrShort     = errors.New("handshake: segment too short")
	ErrOffset    = errors.New("handshake: bad TCP data offset")
	ErrNotTCP    = errors.New("handshake: not a TCP segment")
	ErrNotIP     = errors.New("handshake: not an IPv4 or IPv6 packet")
	ErrOptionLen = errors.New("handshake: options not a multiple of 4 or over 40 bytes")
)

// Segment is a TCP header as the handshake needs it. Options are the raw
// option bytes (a multiple of 4, at most 40); the checksum is not kept: a
// built segment gets its own.
type Segment struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Options          []byte
}

// Is reports whether exactly the flags in want are set among SYN, ACK,
// RST and FIN (PSH, URG, ECE and CWR are ignored).
func (s Segment) Is(want uint8) bool { return s.Flags&(SYN|ACK|RST|FIN) == want }

// Parse reads a TCP header from h (the segment from its first byte; any
// payload after the header is ignored). The data offset is checked
// against h, so nothing is read beyond it.
func Parse(h []byte) (Segment, error) {
	if len(h) < minHeader {
		return Segment{}, ErrShort
	}
	off := int(h[12]>>4) * 4
	if off < minHeader {
		return Segment{}, ErrOffset
	}
	if off > len(h) {
		return Segment{}, ErrShort
	}
	return Segment{
		SrcPort: binary.BigEndian.Uint16(h[0:]),
		DstPort: binary.BigEndian.Uint16(h[2:]),
		Seq:     binary.BigEndian.Uint32(h[4:]),
		Ack:     binary.BigEndian.Uint32(h[8:]),
		Flags:   h[13],
		Window:  binary.BigEndian.Uint16(h[14:]),
		Options: append([]byte(nil), h[minHeader:off]...),
	}, nil
}

// Header is the segment's TCP header with a zero checksum.
func (s Segment) Header() ([]byte, error) {
	if len(s.Options)%4 != 0 || len(s.Options) > maxHeader-minHeader {
		return nil, ErrOptionLen
	}
	h := make([]byte, minHeader, minHeader+len(s.Options))
	binary.BigEndian.PutUint16(h[0:], s.SrcPort)
	binary.BigEndian.PutUint16(h[2:], s.DstPort)
	binary.BigEndian.PutUint32(h[4:], s.Seq)
	binary.BigEndian.PutUint32(h[8:], s.Ack)
	h[12] = uint8(minHeader+len(s.Options)) / 4 << 4
	h[13] = s.Flags
	binary.BigEndian.PutUint16(h[14:], s.Window)
	return append(h, s.Options...), nil
}

// Packet is the segment as an IP packet from src to dst (both IPv4 or both
// IPv6), checksums filled, ready for a raw socket. IPv4 packets have DF
// set: carriers are never fragmented.
func Packet(src, dst netip.Addr, s Segment) ([]byte, error) {
	h, err := s.Header()
	if err != nil {
		return nil, err
	}
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, ErrNotIP
	}
	var ip []byte
	if src.Is4() {
		ip = make([]byte, ipv4Len, ipv4Len+len(h))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(ipv4Len+len(h)))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = protoTCP
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum(0, ip)))
	} else {
		ip = make([]byte, ipv6Len, ipv6Len+len(h))
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(h)))
		ip[6] = protoTCP
		ip[7] = 64
		s6, d6 := src.As16(), dst.As16()
		copy(ip[8:], s6[:])
		copy(ip[24:], d6[:])
	}
	binary.BigEndian.PutUint16(h[16:], checksum(src, dst, h))
	return append(ip, h...), nil
}

// checksum is the TCP checksum of segment b between src and dst.
func checksum(src, dst netip.Addr, b []byte) uint16 {
	s := sum(0, src.AsSlice())
	s = sum(s, dst.AsSlice())
	s += protoTCP + uint64(len(b))
	return ^fold(sum(s, b))
}

// sum adds b (padded to even length) to a ones'-complement accumulator.
func sum(s uint64, b []byte) uint64 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// Frame reads the addresses and TCP header of an Ethernet frame holding
// an IPv4 (without options, unfragmented) or IPv6 (no extension headers)
// TCP segment, as the datapath hands misses over. All lengths are checked
// against the frame.
func Frame(b []byte) (src, dst netip.Addr, s Segment, err error) {
	if len(b) < ethLen {
		return src, dst, s, ErrShort
	}
	ip := b[ethLen:]
	var l4 []byte
	switch binary.BigEndian.Uint16(b[12:]) {
	case 0x0800:
		if len(ip) < ipv4Len {
			return src, dst, s, ErrShort
		}
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[0] != 0x45 || tot < ipv4Len || tot > len(ip) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return src, dst, s, ErrNotIP
		}
		if ip[9] != protoTCP {
			return src, dst, s, ErrNotTCP
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ipv4Len:tot]
	case 0x86dd:
		if len(ip) < ipv6Len {
			return src, dst, s, ErrShort
		}
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if ip[0]>>4 != 6 || ipv6Len+plen > len(ip) {
			return src, dst, s, ErrNotIP
		}
		if ip[6] != protoTCP {
			return src, dst, s, ErrNotTCP
		}
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[ipv6Len : ipv6Len+plen]
	default:
		return src, dst, s, ErrNotIP
	}
	s, err = Parse(l4)
	return src, dst, s, err
}

// WindowScale is the shift of a window-scale option among opts (RFC
// 7323), if there is one. The walk is bounded by opts.
func WindowScale(opts []byte) (shift uint8, ok bool) {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of options
			return 0, false
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return 0, false
		}
		if opts[i] == 3 && opts[i+1] == 3 {
			return min(opts[i+2], 14), true
		}
		i += int(opts[i+1])
	}
	return 0, false
}
