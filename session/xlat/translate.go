package xlat

import "encoding/binary"

// apply checks that entry e fits packet p and returns the translated
// packet, or the reason it was not translated (the input is untouched);
// carrier says p's key is a carrier key of this end.
func apply(p *pkt, e Entry, carrier bool) ([]byte, Reason) {
	if p.icmpErr && (e.Action == ActWrap64 || e.Action == ActUnwrap46) {
		return nil, ReasonPassICMPOther // errors about UDP carriers stay with the stack
	}
	if !fits(p, e) {
		return nil, ReasonDropBadEntry
	}
	if p.ttl <= 1 {
		return nil, ReasonPassTTL
	}
	if p.icmpErr {
		switch e.Action {
		case ActXlat64:
			return err64(p, e)
		case ActXlat46:
			return err46(p, e, WKP)
		}
		return errNAPT(p, e)
	}
	if p.key.Proto == protoUDP && binary.BigEndian.Uint16(p.b[p.l4+6:]) == 0 {
		// IPv6 forbids it, and a native IPv4 carrier is ours: both always
		// have one. NAPT keeps a zero; an unwrapped carrier has none.
		if !p.v4 || e.Action == ActXlat46 {
			return nil, ReasonDropUDPZeroCsum
		}
	}
	if isKeepalive(p, e, carrier) {
		return nil, ReasonKeepalive
	}
	switch e.Action {
	case ActXlat64:
		return xlat64(p, e), ReasonNone
	case ActXlat46:
		return xlat46(p, e), ReasonNone
	case ActNAPT44:
		return napt44(p, e), ReasonNone
	case ActWrap64:
		return wrap64(p, e), ReasonNone
	}
	return unwrap46(p, e), ReasonNone
}

// fits reports whether e's action applies to p's family and protocol.
func fits(p *pkt, e Entry) bool {
	switch e.Action {
	case ActXlat64:
		return !p.v4 && nativeOut(p.key.Proto, true) == e.Proto && e.Proto != 0
	case ActXlat46:
		return p.v4 && nativeOut(p.key.Proto, false) == e.Proto && e.Proto != 0
	case ActWrap64:
		return !p.v4
	case ActNAPT44:
		return p.v4
	case ActUnwrap46:
		return p.v4 && p.key.Proto == protoUDP
	}
	return false
}

// nativeOut is the protocol a native carrier translation produces, 0 if
// there is none (from6: translating IPv6 to IPv4).
func nativeOut(proto uint8, from6 bool) uint8 {
	switch {
	case proto == protoTCP || proto == protoUDP:
		return proto
	case from6 && proto == protoICMPv6:
		return protoICMP
	case !from6 && proto == protoICMP:
		return protoICMPv6
	}
	return 0
}

// tc6 and tos4 move the traffic class/TOS byte (DSCP and ECN kept).
func tc6(h []byte) uint8 { return h[0]<<4 | h[1]>>4 }

func put6(h []byte, tos uint8, plen int, next, hop uint8, e Entry) {
	h[0], h[1], h[2], h[3] = 0x60|tos>>4, tos<<4, 0, 0
	binary.BigEndian.PutUint16(h[4:], uint16(plen))
	h[6], h[7] = next, hop
	s, d := e.Src.As16(), e.Dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
}

// put4 writes a carrier IPv4 header: ID 0 with DF (RFC 6864 allows it for
// atomic datagrams, and RFC 7915 sets DF), checksum computed.
func put4(h []byte, tos uint8, tot int, proto, ttl uint8, e Entry) {
	h[0], h[1] = 0x45, tos
	binary.BigEndian.PutUint16(h[2:], uint16(tot))
	h[4], h[5], h[6], h[7] = 0, 0, 0x40, 0
	h[8], h[9], h[10], h[11] = ttl, proto, 0, 0
	s, d := e.Src.As4(), e.Dst.As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	binary.BigEndian.PutUint16(h[10:], ipv4Csum(h))
}

// ports rewrites the L4 ports (or echo identifier) of l4 to e's and adds
// the change to d. Returns the checksum offset in l4, or -1 if none.
func rewritePorts(p *pkt, l4 []byte, e Entry, d *delta) int {
	switch p.key.Proto {
	case protoTCP, protoUDP:
		d.sub(l4[0:4])
		binary.BigEndian.PutUint16(l4[0:], e.SPort)
		binary.BigEndian.PutUint16(l4[2:], e.DPort)
		d.add(l4[0:4])
		if p.key.Proto == protoTCP {
			return 16
		}
		return 6
	case protoICMP, protoICMPv6:
		if (p.key.Proto == protoICMP) != p.v4 {
			return -1 // the other family's ICMP: no identifier here
		}
		id := e.DPort
		if p.echoRq {
			id = e.SPort
		}
		d.sub(l4[4:6])
		binary.BigEndian.PutUint16(l4[4:], id)
		d.add(l4[4:6])
		return 2
	}
	return -1
}

// finish stores the updated L4 checksum; UDP never sends a computed zero.
func finish(p *pkt, l4 []byte, off int, d delta) {
	old := binary.BigEndian.Uint16(l4[off:])
	if p.key.Proto == protoUDP && old == 0 {
		return // no checksum (IPv4 NAPT only): stays none
	}
	c := d.apply(old)
	if p.key.Proto == protoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// echoType maps the echo type byte and returns it for the checksum.
func echoType(l4 []byte, to6 bool, d *delta) {
	d.sub(l4[0:2])
	switch {
	case to6 && l4[0] == 8:
		l4[0] = 128
	case to6:
		l4[0] = 129
	case l4[0] == 128:
		l4[0] = 8
	default:
		l4[0] = 0
	}
	d.add(l4[0:2])
}

// pseudo6 adds (or removes) the ICMPv6 pseudo-header of h (an IPv6 header).
func pseudo6(d *delta, h []byte, plen int, add bool) {
	f := d.sub
	if add {
		f = d.add
	}
	f(h[8:40])
	var w [8]byte
	binary.BigEndian.PutUint32(w[0:], uint32(plen))
	binary.BigEndian.PutUint32(w[4:], protoICMPv6)
	f(w[:])
}

// xlat64: IPv6 flow packet to native IPv4 carrier, 20 bytes shorter.
func xlat64(p *pkt, e Entry) []byte {
	in := p.b
	h6 := in[ethLen:]
	out := make([]byte, len(in)-20)
	copy(out, in[:12])
	out[12], out[13] = 0x08, 0x00
	copy(out[ethLen+ipv4Len:], in[ethLen+ipv6Len:])
	l4 := out[ethLen+ipv4Len:]
	var d delta
	if p.key.Proto == protoICMPv6 {
		pseudo6(&d, h6, p.l4len, false)
		echoType(l4, false, &d)
	} else {
		d.sub(h6[8:40])
		s, t := e.Src.As4(), e.Dst.As4()
		d.add(s[:])
		d.add(t[:])
	}
	off := rewritePorts(p, l4, e, &d)
	finish(p, l4, off, d)
	put4(out[ethLen:], tc6(h6), p.l4len+ipv4Len, e.Proto, p.ttl-1, e)
	return out
}

// xlat46: native IPv4 carrier to IPv6 flow packet, 20 bytes longer.
func xlat46(p *pkt, e Entry) []byte {
	in := p.b
	h4 := in[ethLen:]
	out := make([]byte, len(in)+20)
	copy(out, in[:12])
	out[12], out[13] = 0x86, 0xdd
	copy(out[ethLen+ipv6Len:], in[ethLen+ipv4Len:])
	h6 := out[ethLen:]
	put6(h6, h4[1], p.l4len, e.Proto, p.ttl-1, e)
	l4 := out[ethLen+ipv6Len:]
	var d delta
	if p.key.Proto == protoICMP {
		pseudo6(&d, h6, p.l4len, true)
		echoType(l4, true, &d)
	} else {
		d.sub(h4[12:20])
		d.add(h6[8:40])
	}
	off := rewritePorts(p, l4, e, &d)
	finish(p, l4, off, d)
	return out
}

// napt44: IPv4 in, IPv4 out, same size: addresses, ports, TTL.
func napt44(p *pkt, e Entry) []byte {
	out := append([]byte(nil), p.b...)
	h := out[ethLen:]
	l4 := out[p.l4 : p.l4+p.l4len]
	var d delta
	if p.key.Proto != protoICMP {
		d.sub(h[12:20])
		s, t := e.Src.As4(), e.Dst.As4()
		d.add(s[:])
		d.add(t[:])
	}
	if off := rewritePorts(p, l4, e, &d); off >= 0 {
		finish(p, l4, off, d)
	}
	put4napt(h, p.ttl-1, e)
	return out
}

// put4napt rewrites addresses and TTL of an existing header, keeping TOS,
// ID and flags, and recomputes its checksum (the input's was verified).
func put4napt(h []byte, ttl uint8, e Entry) {
	h[8], h[10], h[11] = ttl, 0, 0
	s, d := e.Src.As4(), e.Dst.As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	binary.BigEndian.PutUint16(h[10:], ipv4Csum(h))
}

// wrap64: IPv6 packet's payload after IPv4 + UDP, 12 bytes shorter. The
// UDP checksum is zero (allowed in IPv4): the payload keeps its own
// end-to-end integrity and the far end strips the header again.
func wrap64(p *pkt, e Entry) []byte {
	in := p.b
	h6 := in[ethLen:]
	out := make([]byte, len(in)-12)
	copy(out, in[:12])
	out[12], out[13] = 0x08, 0x00
	copy(out[ethLen+ipv4Len+udpLen:], in[ethLen+ipv6Len:])
	put4(out[ethLen:], tc6(h6), p.l4len+ipv4Len+udpLen, protoUDP, p.ttl-1, e)
	u := out[ethLen+ipv4Len:]
	binary.BigEndian.PutUint16(u[0:], e.SPort)
	binary.BigEndian.PutUint16(u[2:], e.DPort)
	binary.BigEndian.PutUint16(u[4:], uint16(p.l4len+udpLen))
	u[6], u[7] = 0, 0
	return out
}

// unwrap46: a UDP carrier's payload as an IPv6 packet with next header
// e.Proto, 12 bytes longer.
func unwrap46(p *pkt, e Entry) []byte {
	in := p.b
	h4 := in[ethLen:]
	out := make([]byte, len(in)+12)
	copy(out, in[:12])
	out[12], out[13] = 0x86, 0xdd
	copy(out[ethLen+ipv6Len:], in[ethLen+ipv4Len+udpLen:])
	put6(out[ethLen:], h4[1], p.l4len-udpLen, e.Proto, p.ttl-1, e)
	return out
}

// KeepaliveMagic is the payload of a carrier keepalive: the edge sends it
// on an idle UDP carrier to refresh the CGNAT's mapping, and the datapath
// on the carrier's far end consumes it (ReasonKeepalive). A token
// keepalive appends the carrier's 8-byte bind token (TokenKeepalive): the
// edge's proof that a carrier the CGNAT moved to another port is its own.
var KeepaliveMagic = [8]byte{'u', 'n', 'm', 'a', 'p', '-', 'k', 'a'}

// TokenKeepaliveLen is a token keepalive's payload length.
const TokenKeepaliveLen = 16

// TokenKeepalive is the payload of a token keepalive.
func TokenKeepalive(token uint64) []byte {
	return binary.BigEndian.AppendUint64(KeepaliveMagic[:], token)
}

// KeepaliveToken reads the token of a token keepalive from a UDP
// datagram (its 8-byte header and payload, bounded by the header's length).
func KeepaliveToken(udp []byte) (token uint64, ok bool) {
	if len(udp) < udpLen+TokenKeepaliveLen || binary.BigEndian.Uint16(udp[4:]) != udpLen+TokenKeepaliveLen ||
		[8]byte(udp[8:16]) != KeepaliveMagic {
		return 0, false
	}
	return binary.BigEndian.Uint64(udp[16:24]), true
}

// isKeepalive: a UDP carrier packet (an entry back to the flow) whose
// payload is exactly KeepaliveMagic, or a token keepalive (a proof). (A
// proof that finds its carrier's entry was not needed: the carrier was
// bound already, or did not move; it goes no further either, so the
// secret never leaves.) The carrier of an IPv4 flow (ActNAPT44) is told
// from the relay's own NAT by its key, a carrier key of this end.
func isKeepalive(p *pkt, e Entry, carrier bool) bool {
	if !p.v4 || p.key.Proto != protoUDP {
		return false
	}
	if e.Action != ActXlat46 && e.Action != ActUnwrap46 && (e.Action != ActNAPT44 || !carrier) {
		return false
	}
	l4 := p.b[p.l4:]
	if len(l4) < 16 || [8]byte(l4[8:16]) != KeepaliveMagic {
		return false
	}
	n := int(binary.BigEndian.Uint16(l4[4:]))
	return n == udpLen+len(KeepaliveMagic) || n == udpLen+TokenKeepaliveLen
}
