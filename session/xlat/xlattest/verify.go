package xlattest

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// VerifyChecksums decodes frame with gopacket and checks the IPv4 header
// checksum and the TCP, UDP, ICMP or ICMPv6 checksum over gopacket's view
// of the IP payload. An IPv4 UDP checksum of zero (none) is accepted.
// Other payloads have nothing to check.
func VerifyChecksums(frame []byte) error {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: false, NoCopy: true})
	var pseudo []byte
	var proto layers.IPProtocol
	var l4 []byte
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		if ones(ip.Contents) != 0xffff {
			return fmt.Errorf("ipv4 header checksum %#04x wrong", ip.Checksum)
		}
		proto, l4 = ip.Protocol, ip.Payload
		pseudo = append(pseudo, ip.SrcIP.To4()...)
		pseudo = append(pseudo, ip.DstIP.To4()...)
		pseudo = append(pseudo, 0, byte(proto), byte(len(l4)>>8), byte(len(l4)))
	case *layers.IPv6:
		proto, l4 = ip.NextHeader, ip.Payload
		pseudo = append(pseudo, ip.SrcIP.To16()...)
		pseudo = append(pseudo, ip.DstIP.To16()...)
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(l4)))
		pseudo = append(pseudo, 0, 0, 0, byte(proto))
	default:
		return errors.New("no IP layer")
	}
	v4 := p.Layer(layers.LayerTypeIPv4) != nil
	switch {
	case proto == layers.IPProtocolTCP && len(l4) >= 20:
	case proto == layers.IPProtocolUDP && len(l4) >= 8:
		if v4 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			return nil
		}
	case proto == layers.IPProtocolICMPv4 && v4 && len(l4) >= 8:
		pseudo = nil
	case proto == layers.IPProtocolICMPv6 && !v4 && len(l4) >= 8:
	default:
		return nil
	}
	if s := ones(append(pseudo, l4...)); s != 0xffff {
		return fmt.Errorf("%v checksum wrong (sum %#04x)", proto, s)
	}
	return nil
}

// ones is the ones'-complement sum of b, odd length padded with zero.
func ones(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
