package xlat

import (
	"encoding/binary"
	"net/netip"
)

// Parsed is a packet as the datapath's parser sees it, for the models of
// other paths that share the parser (session/cgnat): what parse found, so
// they keep its checks and their order instead of writing their own.
type Parsed struct {
	Key         Key   // the lookup key (an ICMP error's: its embedded packet's, reversed)
	V4          bool  // IPv4
	L4          int   // offset of the L4 header in the frame
	L4Len       int   // L4 length from the IP header
	TTL         uint8 // TTL or hop limit
	EchoRequest bool  // ICMP(v6) echo request: the identifier is Key.SPort
	ICMPError   bool  // an ICMP error the datapath rewrites
}

// Parse parses an Ethernet frame as the datapath does. A reason other
// than ReasonNone is why it stops there (the Parsed is then partial).
func Parse(b []byte) (Parsed, Reason) {
	p, r := parse(b)
	return Parsed{Key: p.key, V4: p.v4, L4: p.l4, L4Len: p.l4len, TTL: p.ttl, EchoRequest: p.echoRq, ICMPError: p.icmpErr}, r
}

// MartianDst is the reason the datapath drops a packet to d that goes
// nowhere (martianDst), or ReasonNone.
func MartianDst(d Parsed) Reason {
	return martianDst(&pkt{v4: d.V4, key: d.Key})
}

// MartianOuterSrc is the reason the datapath drops frame b (parsed as d)
// for its outer source (martianSrc), or ReasonNone.
func MartianOuterSrc(cfg *Config, b []byte, d Parsed) Reason {
	return martianSrc(cfg, &pkt{b: b, v4: d.V4, key: d.Key, icmpErr: d.ICMPError})
}

// NAPT44 rewrites IPv4 frame b, a TCP, UDP or ICMP echo packet or an
// ICMP error about one, by e as the datapath's NAPT does (TTL decremented;
// an error's embedded packet with e reversed); an error's outer source
// becomes osrc (the carriers' NAPT gives e.Src, the CGNAT keeps the
// router that sent it inbound). The input must parse and fit e.
func NAPT44(b []byte, e Entry, osrc netip.Addr) ([]byte, Reason) {
	p, r := parse(b)
	if r != ReasonNone {
		return nil, r
	}
	if !p.v4 || !e.Src.Is4() || !e.Dst.Is4() {
		return nil, ReasonDropBadEntry
	}
	e.Action = ActNAPT44
	if !p.icmpErr {
		return napt44(&p, e), ReasonNone
	}
	out, r := errNAPT(&p, e)
	if r != ReasonNone {
		return nil, r
	}
	h := out[ethLen:]
	s := osrc.As4()
	copy(h[12:16], s[:])
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ipv4Csum(h))
	return out, ReasonNone
}

// Xlat64 translates IPv6 frame b, a TCP, UDP or ICMPv6 echo packet or an
// ICMPv6 error about one, into IPv4 by e as the datapath's translator
// does (xlat64, err64: the carriers' RFC 7915 code, for the CGNAT's
// NAT64). The input must parse; e.Proto is the IPv4 protocol.
func Xlat64(b []byte, e Entry) ([]byte, Reason) {
	p, r := parse(b)
	if r != ReasonNone {
		return nil, r
	}
	e.Action = ActXlat64
	if !fits(&p, e) || !e.Src.Is4() || !e.Dst.Is4() {
		return nil, ReasonDropBadEntry
	}
	if p.icmpErr {
		return err64(&p, e)
	}
	if p.key.Proto == protoUDP && binary.BigEndian.Uint16(p.b[p.l4+6:]) == 0 {
		return nil, ReasonDropUDPZeroCsum
	}
	return xlat64(&p, e), ReasonNone
}

// Xlat46 translates IPv4 frame b into IPv6 by e as the datapath does
// (xlat46, err46), an ICMPv4 error's sender shown in prefix pfx (/96).
// e.Proto is the IPv6 protocol.
func Xlat46(b []byte, e Entry, pfx netip.Prefix) ([]byte, Reason) {
	p, r := parse(b)
	if r != ReasonNone {
		return nil, r
	}
	e.Action = ActXlat46
	if !fits(&p, e) || e.Src.Is4() || e.Dst.Is4() {
		return nil, ReasonDropBadEntry
	}
	if p.icmpErr {
		return err46(&p, e, pfx)
	}
	if p.key.Proto == protoUDP && binary.BigEndian.Uint16(p.b[p.l4+6:]) == 0 {
		return nil, ReasonDropUDPZeroCsum
	}
	return xlat46(&p, e), ReasonNone
}
