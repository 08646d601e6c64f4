// Package xlattest builds packets and table states for tests of the
// reference translator and of the XDP datapath, and verifies checksums of
// their outputs independently, with gopacket.
package xlattest

import (
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// MACs of fixture frames: the router's own port and a host.
var (
	RouterMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	HostMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// Spec describes a packet. Proto is the IP protocol; for ICMP (family's)
// the packet is an echo request with identifier SPort, or a reply with
// identifier DPort when Reply is set. Zero TTL means 64.
type Spec struct {
	Src, Dst     netip.Addr
	Proto        uint8
	SPort, DPort uint16
	Reply        bool
	TTL          uint8
	TOS          uint8
	Payload      []byte
	// ICMPType, when non-zero, builds a non-echo ICMP message of that
	// type and code, ICMPRest as its bytes 4-7 (MTU, unused) and Payload
	// behind (the embedded packet of an error).
	ICMPType, ICMPCode uint8
	ICMPRest           [4]byte
	// TCPFlags, when non-zero, replaces a TCP segment's ACK|PSH flags
	// (the byte at offset 13 of the header: FIN 0x01, RST 0x04...).
	TCPFlags uint8
	// Input-only oddities: an IPv6 flow label, an IPv4 option, the
	// IPv4 more-fragments flag, a UDP checksum of zero.
	FlowLabel   uint32
	IPv4Option  bool
	MoreFrags   bool
	ZeroUDPCsum bool
}

// Build serializes s as an Ethernet frame with correct lengths and
// checksums.
func Build(s Spec) []byte {
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	eth := &layers.Ethernet{SrcMAC: HostMAC, DstMAC: RouterMAC}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if s.Src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, TOS: s.TOS, Protocol: layers.IPProtocol(s.Proto),
			SrcIP: s.Src.AsSlice(), DstIP: s.Dst.AsSlice(), Flags: layers.IPv4DontFragment}
		if s.MoreFrags {
			ip.Flags = layers.IPv4MoreFragments
		}
		if s.IPv4Option {
			ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		}
		nl = ip
		ls = append(ls, eth, ip)
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, TrafficClass: s.TOS, NextHeader: layers.IPProtocol(s.Proto),
			SrcIP: s.Src.AsSlice(), DstIP: s.Dst.AsSlice(), FlowLabel: s.FlowLabel}
		nl = ip
		ls = append(ls, eth, ip)
	}
	switch {
	case s.Proto == 6:
		t := &layers.TCP{SrcPort: layers.TCPPort(s.SPort), DstPort: layers.TCPPort(s.DPort),
			Seq: 1000, Ack: 2000, ACK: true, PSH: true, Window: 512}
		if f := s.TCPFlags; f != 0 {
			t.FIN, t.SYN, t.RST, t.PSH, t.ACK, t.URG = f&0x01 != 0, f&0x02 != 0, f&0x04 != 0, f&0x08 != 0, f&0x10 != 0, f&0x20 != 0
		}
		_ = t.SetNetworkLayerForChecksum(nl)
		ls = append(ls, t)
	case s.Proto == 17:
		u := &layers.UDP{SrcPort: layers.UDPPort(s.SPort), DstPort: layers.UDPPort(s.DPort)}
		_ = u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	case s.Proto == 1 && s.Src.Is4():
		tc := layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)
		id := s.SPort
		if s.Reply {
			tc, id = layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), s.DPort
		}
		seq := uint16(7)
		if s.ICMPType != 0 {
			tc = layers.CreateICMPv4TypeCode(s.ICMPType, s.ICMPCode)
			id, seq = uint16(s.ICMPRest[0])<<8|uint16(s.ICMPRest[1]), uint16(s.ICMPRest[2])<<8|uint16(s.ICMPRest[3])
		}
		ls = append(ls, &layers.ICMPv4{TypeCode: tc, Id: id, Seq: seq})
	case s.Proto == 58 && s.Src.Is6():
		tc := layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)
		id := s.SPort
		if s.Reply {
			tc, id = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoReply, 0), s.DPort
		}
		seq := uint16(7)
		if s.ICMPType != 0 {
			tc = layers.CreateICMPv6TypeCode(s.ICMPType, s.ICMPCode)
			id, seq = uint16(s.ICMPRest[0])<<8|uint16(s.ICMPRest[1]), uint16(s.ICMPRest[2])<<8|uint16(s.ICMPRest[3])
		}
		ic := &layers.ICMPv6{TypeCode: tc}
		_ = ic.SetNetworkLayerForChecksum(nl)
		ls = append(ls, ic, &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq})
	}
	ls = append(ls, gopacket.Payload(s.Payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	// gopacket pads frames to the Ethernet minimum; fixtures add padding
	// explicitly where they mean it.
	if s.Src.Is4() {
		b = b[:14+(int(b[16])<<8|int(b[17]))]
	} else {
		b = b[:14+40+(int(b[18])<<8|int(b[19]))]
	}
	if s.ZeroUDPCsum && s.Proto == 17 {
		off := 14 + 40
		if s.Src.Is4() {
			off = 14 + int(b[14]&0xf)*4
		}
		b[off+6], b[off+7] = 0, 0
	}
	return b
}

// FixIPv4 recomputes the IPv4 header checksum of frame after a mutation.
func FixIPv4(frame []byte) []byte {
	ihl := int(frame[14]&0xf) * 4
	if ihl < 20 || 14+ihl > len(frame) {
		return frame
	}
	frame[24], frame[25] = 0, 0
	c := ^ones(frame[14 : 14+ihl])
	frame[24], frame[25] = byte(c>>8), byte(c)
	return frame
}

// L4 returns the IP payload of a frame built by Build (for wrapping).
func L4(frame []byte) []byte {
	if frame[12] == 0x08 {
		return frame[14+int(frame[14]&0xf)*4:]
	}
	return frame[14+40:]
}

// SetTCPDataOffset writes doff (4-bit words, 0 to 15) as the data offset
// of the TCP segment in frame (built by Build: IPv4 without options or
// IPv6 without extension headers) and fixes its checksum (RFC 1624), so
// the parsers' data offset check is what decides it: under 5, or a
// header past the IP packet, is malformed; over 5 makes the first
// payload bytes its options. Anything else, or a frame too short, is
// left as it is. Returns frame.
func SetTCPDataOffset(frame []byte, doff uint8) []byte {
	if len(frame) < 14+40 {
		return frame
	}
	var l4 int
	switch {
	case frame[12] == 0x08 && frame[13] == 0x00 && frame[14] == 0x45 && frame[14+9] == 6:
		l4 = 14 + 20
	case frame[12] == 0x86 && frame[13] == 0xdd && frame[14]>>4 == 6 && frame[14+6] == 6:
		l4 = 14 + 40
	default:
		return frame
	}
	if len(frame) < l4+18 {
		return frame
	}
	old := uint16(frame[l4+12])<<8 | uint16(frame[l4+13])
	frame[l4+12] = doff<<4 | frame[l4+12]&0x0f
	nw := uint16(frame[l4+12])<<8 | uint16(frame[l4+13])
	c := ^(uint16(frame[l4+16])<<8 | uint16(frame[l4+17]))
	c = add1(add1(c, ^old), nw)
	c = ^c
	frame[l4+16], frame[l4+17] = byte(c>>8), byte(c)
	return frame
}

// add1 is the ones'-complement sum of a and b.
func add1(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s&0xffff + s>>16)
}
