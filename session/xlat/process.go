package xlat

import (
	"cmp"
	"encoding/binary"
	"net/netip"
)

// Tables is the state a program consults: the flow map and, on a miss,
// the address sets that tell unmap's traffic from the router's (and, at
// the relay, the sources it refuses: martian.go).
type Tables interface {
	Lookup(Key) (Entry, bool)
	IsLocal(netip.Addr) bool // an address of the router itself
	InSite(netip.Addr) bool  // inside a site's prefix or public IPv4
}

// Result is what the datapath does with one packet.
type Result struct {
	Verdict Verdict
	Reason  Reason // ReasonNone when translated and forwarded
	Out     []byte // the packet as it leaves (the input when untouched)
	Hit     bool   // a flow entry matched and the packet was translated
	Key     Key    // valid when the packet was parsed far enough to look up
	Miss    []byte // for ReasonMiss and the *ToAgent reasons: the bytes handed to the agent
	// ICMPError: the packet is an ICMP error, looked up by its embedded
	// packet (Key is that packet's tuple reversed).
	ICMPError bool
	// TCPEnd is what the translated packet adds to its entry's flags
	// (EndFIN, EndRST): how the agents learn a connection ended.
	TCPEnd uint16
}

// Entry flags the datapath sets on a translated TCP segment with FIN or
// RST, so the agents can move a closed connection to the transitory
// timeout (RFC 5382 REQ-5, RFC 7857 3.1) instead of holding its ports
// for the established one.
const (
	EndFIN uint16 = 1 << 0
	EndRST uint16 = 1 << 1
)

// tcpEnd is the entry flags a plain TCP segment sets.
func tcpEnd(p *pkt) uint16 {
	if p.icmpErr || p.key.Proto != protoTCP || len(p.b) < p.l4+14 {
		return 0
	}
	var f uint16
	if p.b[p.l4+13]&0x01 != 0 {
		f |= EndFIN
	}
	if p.b[p.l4+13]&0x04 != 0 {
		f |= EndRST
	}
	return f
}

const (
	ethLen  = 14
	ipv4Len = 20
	ipv6Len = 40
	udpLen  = 8

	// MissSnap bounds the bytes of a missed packet copied to the agent.
	MissSnap = 1536

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// pkt is a parsed packet: where its parts are and what it is looked up by.
type pkt struct {
	b       []byte
	v4      bool
	l4      int // offset of the L4 header
	l4len   int // L4 length from the IP header
	ttl     uint8
	key     Key
	echoRq  bool // ICMP(v6) echo request (id is the source port)
	icmpErr bool // an ICMP error: key is its embedded packet's, reversed
}

// Process runs one packet through the datapath of the given role. fib
// decides forwarding of translated packets; nil means forwarding is
// switched off (the test mode): translated packets pass to the stack.
func Process(role Role, cfg *Config, t Tables, fib FIB, b []byte) Result {
	p, r := parse(b)
	if r != ReasonNone {
		return untouched(b, r)
	}
	e, ok := t.Lookup(p.key)
	if !ok {
		r := classifyMiss(role, cfg, t, &p)
		if r == ReasonMiss || r == ReasonTTLToAgent {
			if m := cmp.Or(martianSrc(cfg, &p), foreignSrc(role, t, &p)); m != ReasonNone {
				r = m
			}
		}
		res := untouched(b, r)
		res.Key = p.key
		if res.Reason.ToAgent() {
			res.Miss = b[:min(len(b), MissSnap)]
		}
		return res
	}
	if r := martianSrc(cfg, &p); r != ReasonNone {
		res := untouched(b, r)
		res.Key, res.ICMPError = p.key, p.icmpErr
		return res
	}
	if role == RoleRelayExt || role == RoleEdgeLAN {
		r := slowPath(role, cfg, &p)
		if r.ToAgent() {
			if m := foreignSrc(role, t, &p); m != ReasonNone {
				r = m
			}
		}
		if r != ReasonNone {
			res := untouched(b, r)
			res.Key, res.ICMPError = p.key, p.icmpErr
			if r.ToAgent() {
				res.Miss = b[:min(len(b), MissSnap)]
			}
			return res
		}
	}
	end := tcpEnd(&p) // before apply moves the header
	out, r := apply(&p, e, carrierKey(cfg, &p))
	if r != ReasonNone {
		res := untouched(b, r)
		res.Key = p.key
		return res
	}
	res := forward(fib, out)
	res.Hit, res.Key, res.ICMPError, res.TCPEnd = true, p.key, p.icmpErr, end
	return res
}

// carrierKey reports whether p's key is a carrier key of this end: IPv4
// to the carrier address, a destination port in the carrier range (C's
// carrier_slot_index >= 0).
func carrierKey(cfg *Config, p *pkt) bool {
	return p.v4 && cfg.CarrierAddr.IsValid() && !cfg.CarrierAddr.IsUnspecified() && p.key.Dst == cfg.CarrierAddr && cfg.inRange(p.key.DPort)
}

func untouched(b []byte, r Reason) Result {
	return Result{Verdict: r.Verdict(), Reason: r, Out: b}
}

func parse(b []byte) (pkt, Reason) {
	p := pkt{b: b}
	if len(b) < ethLen {
		return p, ReasonPassNotIP
	}
	switch binary.BigEndian.Uint16(b[12:]) {
	case 0x0800:
		return parse4(p)
	case 0x86dd:
		return parse6(p)
	}
	return p, ReasonPassNotIP
}

func parse4(p pkt) (pkt, Reason) {
	h := p.b[ethLen:]
	if len(h) < ipv4Len {
		return p, ReasonDropTruncL3
	}
	if h[0]>>4 != 4 || h[0]&0xf < 5 {
		return p, ReasonDropBadIP
	}
	if h[0]&0xf > 5 {
		return p, ReasonPassIPOptions
	}
	tot := int(binary.BigEndian.Uint16(h[2:]))
	if tot < ipv4Len || tot > len(h) {
		return p, ReasonDropBadLen
	}
	if sum16(h[:ipv4Len]) != 0xffff {
		return p, ReasonDropBadCsum
	}
	if binary.BigEndian.Uint16(h[6:])&0x3fff != 0 {
		return p, ReasonPassFragment
	}
	if h[16] >= 224 {
		return p, ReasonPassLocal // multicast, reserved, broadcast
	}
	p.v4, p.ttl = true, h[8]
	p.l4, p.l4len = ethLen+ipv4Len, tot-ipv4Len
	p.key.Proto = h[9]
	p.key.Src = netip.AddrFrom4([4]byte(h[12:16]))
	p.key.Dst = netip.AddrFrom4([4]byte(h[16:20]))
	return p, parseL4(&p, protoICMP, 8, 0)
}

func parse6(p pkt) (pkt, Reason) {
	h := p.b[ethLen:]
	if len(h) < ipv6Len {
		return p, ReasonDropTruncL3
	}
	if h[0]>>4 != 6 {
		return p, ReasonDropBadIP
	}
	plen := int(binary.BigEndian.Uint16(h[4:]))
	if ipv6Len+plen > len(h) {
		return p, ReasonDropBadLen
	}
	if h[24] == 0xff || (h[24] == 0xfe && h[25]&0xc0 == 0x80) {
		return p, ReasonPassLocal // multicast, link-local
	}
	switch h[6] {
	case 44:
		return p, ReasonPassFragment
	case 0, 43, 51, 60, 135, 139, 140, 253, 254:
		return p, ReasonPassIPv6Ext
	}
	p.ttl = h[7]
	p.l4, p.l4len = ethLen+ipv6Len, plen
	p.key.Proto = h[6]
	p.key.Src = netip.AddrFrom16([16]byte(h[8:24]))
	p.key.Dst = netip.AddrFrom16([16]byte(h[24:40]))
	return p, parseL4(&p, protoICMPv6, 128, 129)
}

// parseL4 finds the ports; icmp is this family's ICMP, with its echo
// request and reply types (ICMPv4 reply is type 0).
func parseL4(p *pkt, icmp, echoReq, echoRep uint8) Reason {
	l4 := p.b[p.l4 : p.l4+p.l4len]
	switch p.key.Proto {
	case protoTCP:
		if len(l4) < 20 {
			return ReasonDropTruncL4
		}
		// The header is as long as its data offset says: under 20
		// bytes, or past the IP packet (l4 ends there, so past the
		// frame too), it is no segment a receiver takes, and carried
		// on it would still bind carriers and make CGNAT mappings.
		// Dropped in every role, as a short L4 header is (parse.h
		// says why). An ICMP error's quoted header (parseError) is
		// not checked: a quote may end 8 bytes into it.
		if hl := int(l4[12]>>4) * 4; hl < 20 || hl > len(l4) {
			return ReasonDropBadTCPOffset
		}
	case protoUDP:
		if len(l4) < udpLen {
			return ReasonDropTruncL4
		}
		if int(binary.BigEndian.Uint16(l4[4:])) != len(l4) {
			return ReasonDropBadLen
		}
	case icmp:
		if len(l4) < 8 {
			return ReasonDropTruncL4
		}
		id := binary.BigEndian.Uint16(l4[4:])
		switch l4[0] {
		case echoReq:
			p.key.SPort, p.echoRq = id, true
		case echoRep:
			p.key.DPort = id
		default:
			return parseError(p, l4)
		}
		return ReasonNone
	default:
		return ReasonNone // other payloads have no ports
	}
	p.key.SPort = binary.BigEndian.Uint16(l4[0:])
	p.key.DPort = binary.BigEndian.Uint16(l4[2:])
	return ReasonNone
}

// classifyMiss decides what a packet without an entry is: the router's,
// unmap's (to the agent), or someone else's.
func classifyMiss(role Role, cfg *Config, t Tables, p *pkt) Reason {
	if r := martianDst(p); r != ReasonNone {
		return r
	}
	if role == RoleEdgeLAN {
		// The router's own addresses, and the site's other segments
		// (the edge routes between its LANs), are not unmap's.
		if t.IsLocal(p.key.Dst) || t.InSite(p.key.Dst) {
			return ReasonPassLocal
		}
		// IPv4 rides the site's public IPv4 only for TCP and UDP: an
		// ICMP echo carrier's one identifier is rewritten by the CGNAT,
		// so the relay could not tell its carrier; ping keeps the
		// ordinary path.
		if p.v4 && (!cfg.LANv4ToAgent || p.key.Proto == protoICMP) {
			return ReasonPassNotOurs
		}
		// IPv4 link-local is never forwarded (RFC 3927): not through the
		// relay either, whose own 169.254.169.254 may be a cloud's
		// metadata service.
		if p.v4 && linkLocal4.Contains(p.key.Dst) {
			return ReasonDropMartianDst
		}
		// A new flow's IPv6 packet that cannot leave the edge: the
		// agent answers time exceeded (the stack, with no IPv6 route
		// out, would answer no route).
		if p.ttl <= 1 {
			if p.v4 {
				return ReasonPassTTL
			}
			return ReasonTTLToAgent
		}
		return ReasonMiss
	}
	if p.v4 && cfg.CarrierAddr.IsValid() && !cfg.CarrierAddr.IsUnspecified() && p.key.Dst == cfg.CarrierAddr {
		// A TCP or UDP packet to a carrier port is a carrier's first
		// packet. An ICMP echo without an entry is not: the CGNAT
		// rewrites an echo carrier's one identifier, so no agent could
		// bind it, and it is the router's own ping (or its reply).
		if (p.key.Proto == protoTCP || p.key.Proto == protoUDP) && cfg.inRange(p.key.DPort) {
			return ReasonMiss
		}
	}
	if role == RoleRelayExt && t.InSite(p.key.Dst) {
		return ReasonMiss
	}
	return ReasonPassNotOurs
}
