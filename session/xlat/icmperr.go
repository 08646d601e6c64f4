package xlat

import (
	"encoding/binary"
	"net/netip"
)

// ICMP errors (RFC 7915 sections 4.2 and 5.2): an error about a flow's
// packet travels the other way, so it is looked up by its embedded
// packet's tuple reversed, which is the key of packets going where the
// error goes. The outer header is translated like any packet of that
// direction (so an error from a router on the far side appears to come
// from the far end); the embedded header is translated with the entry
// reversed. Sizes: both IP headers change, so an ICMPv6 error loses 40
// bytes and an ICMPv4 error gains 40. The ICMP checksum is updated
// incrementally; the embedded L4 checksum is left as it is (the embedded
// packet is usually truncated and its checksum unverifiable).

// Who sent an error matters to traceroute and path-MTU discovery, which
// show and use the sender's address. An error from the far end of what it
// is about (outer source = embedded destination) is translated here, as
// above. Otherwise a router on the way sent it:
//   - at the relay, an ICMPv6 error from a router beyond it is handed to
//     the agent (ReasonICMPErrToAgent), which sends it to the edge over
//     the control channel untranslated: the site's addresses are not
//     rewritten on the IPv6 side, so the LAN host can take it as it is;
//   - an ICMPv4 error from a router on the carrier path becomes an
//     ICMPv6 error from that router's address in the RFC 6052 well-known
//     prefix 64:ff9b::/96, as a NAT64 would show it. A time exceeded in
//     transit (type 11 code 0) is always a router's: the far end of a
//     carrier is the relay or the edge, whose own time exceeded (their
//     agent's answer to a carrier that ran out of TTL there) is a hop too.

// WKP is the RFC 6052 well-known prefix, 64:ff9b::/96.
var WKP = netip.MustParsePrefix("64:ff9b::/96")

// Embed is IPv4 address a in /96 prefix pfx (RFC 6052 2.2: the last 32
// bits).
func Embed(pfx netip.Prefix, a netip.Addr) netip.Addr {
	b := pfx.Addr().As16()
	v := a.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

// slowPath says which packets that match an entry the program hands to
// its agent. At the relay: ICMPv6 errors from routers beyond it, and
// carriers whose TTL runs out there (they are addressed to the relay, so
// its stack would take them as its own instead of answering time
// exceeded). At the edge's LAN: IPv6 whose hop limit runs out there (the
// edge's stack has no IPv6 route out and would answer no route).
func slowPath(role Role, cfg *Config, p *pkt) Reason {
	if role == RoleEdgeLAN {
		if !p.icmpErr && !p.v4 && p.ttl <= 1 {
			return ReasonTTLToAgent
		}
		return ReasonNone
	}
	if p.icmpErr && !p.v4 {
		if netip.AddrFrom16([16]byte(p.b[ethLen+8:ethLen+24])) == p.key.Src {
			return ReasonNone // from the far end: translated
		}
		if p.ttl <= 1 {
			return ReasonPassTTL
		}
		return ReasonICMPErrToAgent
	}
	if !p.icmpErr && p.v4 && p.ttl <= 1 && cfg.CarrierAddr.IsValid() && !cfg.CarrierAddr.IsUnspecified() && p.key.Dst == cfg.CarrierAddr {
		return ReasonTTLToAgent
	}
	return ReasonNone
}

const (
	errEmb4 = ethLen + ipv4Len + 8 // embedded header behind an ICMPv4 error
	errEmb6 = ethLen + ipv6Len + 8 // embedded header behind an ICMPv6 error
)

// parseError accepts the errors unmap translates when their embedded
// packet is a plain TCP, UDP or ICMP echo packet, and keys them by it.
func parseError(p *pkt, l4 []byte) Reason {
	t := l4[0]
	if p.v4 && t != 3 && t != 11 || !p.v4 && (t < 1 || t > 3) {
		return ReasonPassICMPOther
	}
	hl, icmp, req, rep := ipv4Len, uint8(protoICMP), uint8(8), uint8(0)
	if !p.v4 {
		hl, icmp, req, rep = ipv6Len, protoICMPv6, 128, 129
	}
	if len(l4) < 8+hl+8 {
		return ReasonPassICMPOther
	}
	e := l4[8:]
	var proto uint8
	var src, dst netip.Addr
	if p.v4 {
		if e[0] != 0x45 || binary.BigEndian.Uint16(e[6:])&0x1fff != 0 || binary.BigEndian.Uint16(e[2:]) < ipv4Len {
			return ReasonPassICMPOther
		}
		proto = e[9]
		src, dst = netip.AddrFrom4([4]byte(e[12:16])), netip.AddrFrom4([4]byte(e[16:20]))
	} else {
		if e[0]>>4 != 6 {
			return ReasonPassICMPOther
		}
		proto = e[6]
		src, dst = netip.AddrFrom16([16]byte(e[8:24])), netip.AddrFrom16([16]byte(e[24:40]))
	}
	el4 := e[hl:]
	var sport, dport uint16
	switch {
	case proto == protoTCP || proto == protoUDP:
		sport, dport = binary.BigEndian.Uint16(el4[0:]), binary.BigEndian.Uint16(el4[2:])
	case proto == icmp && el4[0] == req:
		sport = binary.BigEndian.Uint16(el4[4:])
	case proto == icmp && el4[0] == rep:
		dport = binary.BigEndian.Uint16(el4[4:])
	default:
		return ReasonPassICMPOther
	}
	p.key = Key{Proto: proto, Src: dst, Dst: src, SPort: dport, DPort: sport}
	p.icmpErr = true
	return ReasonNone
}

// map64 is the ICMPv6 -> ICMPv4 type and code (RFC 7915 5.2).
func map64(t, c uint8) (uint8, uint8, bool) {
	switch {
	case t == 1 && (c == 0 || c == 2 || c == 3):
		return 3, 1, true
	case t == 1 && c == 1:
		return 3, 10, true
	case t == 1 && c == 4:
		return 3, 3, true
	case t == 2 && c == 0:
		return 3, 4, true
	case t == 3 && c <= 1:
		return 11, c, true
	}
	return 0, 0, false
}

// map46 is the ICMPv4 -> ICMPv6 type and code (RFC 7915 4.2).
func map46(t, c uint8) (uint8, uint8, bool) {
	switch {
	case t == 3 && (c <= 1 || c == 5 || c == 6 || c == 7 || c == 8 || c == 11 || c == 12):
		return 1, 0, true
	case t == 3 && (c == 9 || c == 10 || c == 13 || c == 15):
		return 1, 1, true
	case t == 3 && c == 3:
		return 1, 4, true
	case t == 3 && c == 4:
		return 2, 0, true
	case t == 11 && c <= 1:
		return 3, c, true
	}
	return 0, 0, false
}

// rewriteEmb gives the embedded packet's first 8 L4 bytes the reversed
// entry's ports (or echo identifier); to6/to4 also maps the echo type.
func rewriteEmb(p *pkt, l4 []byte, e Entry, mapType func(uint8) uint8) {
	switch p.key.Proto {
	case protoTCP, protoUDP:
		binary.BigEndian.PutUint16(l4[0:], e.DPort)
		binary.BigEndian.PutUint16(l4[2:], e.SPort)
		return
	}
	id := e.SPort
	if l4[0] == 8 || l4[0] == 128 {
		id = e.DPort
	}
	if mapType != nil {
		l4[0] = mapType(l4[0])
	}
	binary.BigEndian.PutUint16(l4[4:], id)
}

func echoTo4(t uint8) uint8 {
	if t == 128 {
		return 8
	}
	return 0
}

func echoTo6(t uint8) uint8 {
	if t == 8 {
		return 128
	}
	return 129
}

func reversed(e Entry) Entry {
	e.Src, e.Dst = e.Dst, e.Src
	return e
}

// err64 translates an ICMPv6 error into an ICMPv4 error, 40 bytes shorter.
func err64(p *pkt, e Entry) ([]byte, Reason) {
	in := p.b
	ic := in[ethLen+ipv6Len : errEmb6]
	t, c, ok := map64(ic[0], ic[1])
	if !ok {
		return nil, ReasonPassICMPOther
	}
	out := make([]byte, len(in)-40)
	copy(out, in[:12])
	out[12], out[13] = 0x08, 0x00
	copy(out[errEmb4+ipv4Len:], in[errEmb6+ipv6Len:])
	oic, oe4, oel4 := out[ethLen+ipv4Len:errEmb4], out[errEmb4:errEmb4+ipv4Len], out[errEmb4+ipv4Len:]
	e6 := in[errEmb6 : errEmb6+ipv6Len]
	oic[0], oic[1] = t, c
	if t == 3 && c == 4 {
		mtu := binary.BigEndian.Uint32(ic[4:]) - 20
		if binary.BigEndian.Uint32(ic[4:]) < 20 {
			mtu = 0
		}
		binary.BigEndian.PutUint16(oic[6:], uint16(min(mtu, 0xffff)))
	}
	put4(oe4, tc6(e6), int(binary.BigEndian.Uint16(e6[4:]))+ipv4Len, nativeOut(e6[6], true), e6[7], reversed(e))
	rewriteEmb(p, oel4, e, echoTo4)
	var d delta
	pseudo6(&d, in[ethLen:], p.l4len, false)
	d.sub(ic[0:2])
	d.sub(ic[4:8])
	d.sub(e6)
	d.sub(in[errEmb6+ipv6Len : errEmb6+ipv6Len+8])
	d.add(oic[0:2])
	d.add(oic[4:8])
	d.add(oe4)
	d.add(oel4[0:8])
	binary.BigEndian.PutUint16(oic[2:], d.apply(binary.BigEndian.Uint16(ic[2:])))
	put4(out[ethLen:], tc6(in[ethLen:]), p.l4len, protoICMP, p.ttl-1, e)
	return out, ReasonNone
}

// err46 translates an ICMPv4 error into an ICMPv6 error, 40 bytes longer;
// a router's address shows in pfx (/96: the carriers' WKP, a NAT64's
// own prefix).
func err46(p *pkt, e Entry, pfx netip.Prefix) ([]byte, Reason) {
	in := p.b
	ic := in[ethLen+ipv4Len : errEmb4]
	t, c, ok := map46(ic[0], ic[1])
	if !ok || t == 2 && binary.BigEndian.Uint16(ic[6:]) == 0 {
		return nil, ReasonPassICMPOther
	}
	e4 := in[errEmb4 : errEmb4+ipv4Len]
	out := make([]byte, len(in)+40)
	copy(out, in[:12])
	out[12], out[13] = 0x86, 0xdd
	copy(out[errEmb6+ipv6Len:], in[errEmb4+ipv4Len:])
	oh6, oic, oe6, oel4 := out[ethLen:ethLen+ipv6Len], out[ethLen+ipv6Len:errEmb6], out[errEmb6:errEmb6+ipv6Len], out[errEmb6+ipv6Len:]
	oic[0], oic[1] = t, c
	if t == 2 {
		binary.BigEndian.PutUint32(oic[4:], uint32(binary.BigEndian.Uint16(ic[6:]))+20)
	}
	put6(oe6, e4[1], int(binary.BigEndian.Uint16(e4[2:]))-ipv4Len, nativeOut(e4[9], false), e4[8], reversed(e))
	rewriteEmb(p, oel4, e, echoTo6)
	if from := netip.AddrFrom4([4]byte(in[ethLen+12 : ethLen+16])); from != p.key.Src || ic[0] == 11 && ic[1] == 0 {
		e.Src = Embed(pfx, from) // a router on the carrier path
	}
	put6(oh6, in[ethLen+1], p.l4len+20, protoICMPv6, p.ttl-1, e)
	var d delta
	d.sub(ic[0:2])
	d.sub(ic[4:8])
	d.sub(e4)
	d.sub(in[errEmb4+ipv4Len : errEmb4+ipv4Len+8])
	d.add(oic[0:2])
	d.add(oic[4:8])
	d.add(oe6)
	d.add(oel4[0:8])
	pseudo6(&d, oh6, p.l4len+20, true)
	binary.BigEndian.PutUint16(oic[2:], d.apply(binary.BigEndian.Uint16(ic[2:])))
	return out, ReasonNone
}

// errNAPT rewrites an ICMPv4 error and its embedded packet, same size.
func errNAPT(p *pkt, e Entry) ([]byte, Reason) {
	out := append([]byte(nil), p.b...)
	ic, oe4, oel4 := out[ethLen+ipv4Len:errEmb4], out[errEmb4:errEmb4+ipv4Len], out[errEmb4+ipv4Len:]
	var d delta
	d.sub(oe4)
	d.sub(oel4[0:8])
	r := reversed(e)
	s, t := r.Src.As4(), r.Dst.As4()
	copy(oe4[12:16], s[:])
	copy(oe4[16:20], t[:])
	oe4[10], oe4[11] = 0, 0
	binary.BigEndian.PutUint16(oe4[10:], ipv4Csum(oe4))
	rewriteEmb(p, oel4, e, nil)
	d.add(oe4)
	d.add(oel4[0:8])
	binary.BigEndian.PutUint16(ic[2:], d.apply(binary.BigEndian.Uint16(ic[2:])))
	put4napt(out[ethLen:], p.ttl-1, e)
	return out, ReasonNone
}

// ErrorKey parses an Ethernet frame and, when it is an ICMP error unmap
// translates, returns its key: the embedded packet's tuple reversed, the
// key of packets going where the error goes. The agents use it for the
// errors the datapath hands them.
func ErrorKey(frame []byte) (Key, bool) {
	p, r := parse(frame)
	return p.key, r == ReasonNone && p.icmpErr
}
