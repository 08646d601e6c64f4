package xlattest

import (
	"encoding/binary"
	"net/netip"

	"github.com/unmap-dev/unmap/session/xlat"
)

// emb is a packet as an ICMP error embeds it: without Ethernet, cut to
// max bytes (0: whole).
func emb(s Spec, max int) []byte {
	b := Build(s)[14:]
	if max > 0 && len(b) > max {
		b = b[:max]
	}
	return b
}

// embOff is emb with the quoted TCP header's data offset set to doff
// (SetTCPDataOffset) before the cut.
func embOff(s Spec, max int, doff uint8) []byte {
	b := SetTCPDataOffset(Build(s), doff)[14:]
	if max > 0 && len(b) > max {
		b = b[:max]
	}
	return b
}

// keepL4Csum copies the embedded L4 checksum of orig into b: the
// translator leaves it as it was.
func keepL4Csum(b, orig []byte) []byte {
	hb, ho := ipHdrLen(b), ipHdrLen(orig)
	off := map[uint8]int{6: 16, 17: 6, 1: 2, 58: 2}[l4Proto(b)]
	if hb+off+2 <= len(b) && ho+off+2 <= len(orig) {
		copy(b[hb+off:hb+off+2], orig[ho+off:ho+off+2])
	}
	return b
}

func ipHdrLen(b []byte) int {
	if b[0]>>4 == 4 {
		return int(b[0]&0xf) * 4
	}
	return 40
}

func l4Proto(b []byte) uint8 {
	if b[0]>>4 == 4 {
		return b[9]
	}
	return b[6]
}

// wkp is a in 64:ff9b::/96.
func wkp(a netip.Addr) netip.Addr {
	b := xlat.WKP.Addr().As16()
	v := a.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

func icmpErr(proto uint8, s, d netip.Addr, ttl, typ, code uint8, rest uint32, payload []byte) Spec {
	x := Spec{Proto: proto, Src: s, Dst: d, TTL: ttl, ICMPType: typ, ICMPCode: code, Payload: payload}
	binary.BigEndian.PutUint32(x.ICMPRest[:], rest)
	return x
}

// errorFixtures: ICMP errors both ways with their embedded packets.
func errorFixtures() []Fixture {
	router6 := netip.MustParseAddr("2001:db8:2::1")
	router4 := netip.MustParseAddr("198.51.100.1")
	var fs []Fixture
	add := func(name string, role xlat.Role, in, out Spec) {
		fs = append(fs, Fixture{Name: name, Role: role, In: Build(in), Verdict: xlat.Pass, Out: Build(out)})
	}

	// Site host: port unreachable about the remote's UDP packet.
	o := sp(17, Remote6, 443, SiteHost, 40000, 60)
	t := sp(17, RelayAddr, 30000, EdgeWAN, 20000, 60)
	add("icmp-error/edge-lan/v6-port-unreachable", lan,
		icmpErr(58, SiteHost, Remote6, 64, 1, 4, 0, emb(o, 0)),
		icmpErr(1, EdgeWAN, RelayAddr, 63, 3, 3, 0, keepL4Csum(emb(t, 0), emb(o, 0))))

	// The remote itself: packet too big about the site's TCP packet.
	o = sp(6, SiteHost, 40000, Remote6, 443, 50)
	t = sp(6, CGNATPub, 20001, RelayAddr, 30000, 50)
	add("icmp-error/relay/v6-packet-too-big", rel,
		icmpErr(58, Remote6, SiteHost, 64, 2, 0, 1400, emb(o, 0)),
		icmpErr(1, RelayAddr, CGNATPub, 63, 3, 4, 1380, keepL4Csum(emb(t, 0), emb(o, 0))))

	// Relay: fragmentation needed about an edge's carrier (RFC 792: IP
	// header + 8 bytes embedded).
	o = sp(6, EdgeWAN, 20000, RelayAddr, 30000, 40)
	t = sp(6, SiteHost, 40000, Remote6, 443, 40)
	add("icmp-error/edge-wan/frag-needed", wan,
		icmpErr(1, RelayAddr, EdgeWAN, 60, 3, 4, 1380, emb(o, 28)),
		icmpErr(58, Remote6, SiteHost, 59, 2, 0, 1400, keepL4Csum(emb(t, 48), emb(o, 28))))

	// Router between relay and CGNAT: time exceeded about a relay carrier.
	o = sp(6, RelayAddr, 30000, CGNATPub, 20001, 1)
	t = sp(6, Remote6, 443, SiteHost, 40000, 1)
	// It appears as its address in 64:ff9b::/96, not as the site host.
	add("icmp-error/relay/v4-time-exceeded", rel,
		icmpErr(1, router4, RelayAddr, 60, 11, 0, 0, emb(o, 28)),
		icmpErr(58, wkp(router4), Remote6, 59, 3, 0, 0, keepL4Csum(emb(t, 48), emb(o, 28))))

	// Carrier path, edge side (traceroute6 from the site): the CGNAT's
	// time exceeded about a carrier, then the relay's own (its agent's
	// answer to a carrier that ran out of TTL there), then a router's
	// unreachable: all are routers, shown in 64:ff9b::/96.
	cgn := netip.MustParseAddr("100.64.0.1")
	o = sp(17, EdgeWAN, 20000, RelayAddr, 30000, 1)
	t = sp(17, SiteHost, 40000, Remote6, 443, 1)
	add("icmp-error/edge-wan/cgn-time-exceeded", wan,
		icmpErr(1, cgn, EdgeWAN, 64, 11, 0, 0, emb(o, 28)),
		icmpErr(58, wkp(cgn), SiteHost, 63, 3, 0, 0, keepL4Csum(emb(t, 48), emb(o, 28))))
	add("icmp-error/edge-wan/relay-time-exceeded", wan,
		icmpErr(1, RelayAddr, EdgeWAN, 62, 11, 0, 0, emb(o, 28)),
		icmpErr(58, wkp(RelayAddr), SiteHost, 61, 3, 0, 0, keepL4Csum(emb(t, 48), emb(o, 28))))
	add("icmp-error/edge-wan/router-unreachable", wan,
		icmpErr(1, router4, EdgeWAN, 62, 3, 1, 0, emb(o, 28)),
		icmpErr(58, wkp(router4), SiteHost, 61, 1, 0, 0, keepL4Csum(emb(t, 48), emb(o, 28))))

	// An error's quoted TCP header is not checked as a segment's is: a
	// quote may stop 8 bytes into it (RFC 792), before its data offset,
	// and what it quotes was already sent. Quoted whole with data offset
	// 0, or cut inside a header whose data offset runs past the quote,
	// it is translated as any other.
	o = sp(6, SiteHost, 40000, Remote6, 443, 50)
	t = sp(6, CGNATPub, 20001, RelayAddr, 30000, 50)
	add("icmp-error/relay/quoted-tcp-data-offset-0", rel,
		icmpErr(58, Remote6, SiteHost, 64, 2, 0, 1400, embOff(o, 0, 0)),
		icmpErr(1, RelayAddr, CGNATPub, 63, 3, 4, 1380, keepL4Csum(embOff(t, 0, 0), embOff(o, 0, 0))))
	o = sp(6, EdgeWAN, 20000, RelayAddr, 30000, 40)
	t = sp(6, SiteHost, 40000, Remote6, 443, 40)
	add("icmp-error/edge-wan/quoted-tcp-header-cut", wan,
		icmpErr(1, RelayAddr, EdgeWAN, 60, 3, 4, 1380, embOff(o, 20+16, 15)),
		icmpErr(58, Remote6, SiteHost, 59, 2, 0, 1400, keepL4Csum(embOff(t, 40+16, 15), embOff(o, 20+16, 15))))

	// The remote's port unreachable (traceroute's last hop) stays the
	// remote's, translated in the relay's datapath.
	o = sp(17, SiteHost, 40000, Remote6, 443, 1)
	t = sp(17, CGNATPub, 20001, RelayAddr, 30000, 1)
	add("icmp-error/relay/v6-port-unreachable", rel,
		icmpErr(58, Remote6, SiteHost, 64, 1, 4, 0, emb(o, 0)),
		icmpErr(1, RelayAddr, CGNATPub, 63, 3, 3, 0, keepL4Csum(emb(t, 0), emb(o, 0))))

	// Internet routers beyond the relay: their ICMPv6 errors go to the
	// relay's agent whole, for the edge (traceroute, path MTU).
	toAgent := func(name string, in Spec) {
		fs = append(fs, untouched(name, rel, Build(in), xlat.ReasonICMPErrToAgent))
	}
	toAgent("icmp-error/relay/router-packet-too-big", icmpErr(58, router6, SiteHost, 64, 2, 0, 1400, emb(sp(6, SiteHost, 40000, Remote6, 443, 50), 0)))
	toAgent("icmp-error/relay/router-time-exceeded", icmpErr(58, router6, SiteHost, 64, 3, 0, 0, emb(sp(17, SiteHost, 40000, Remote6, 443, 1), 0)))
	oe := Spec{Proto: 58, Src: SiteHost, Dst: Remote6, SPort: 77, TTL: 1, Payload: hello}
	toAgent("icmp-error/relay/router-time-exceeded-echo", icmpErr(58, router6, SiteHost, 64, 3, 0, 0, emb(oe, 0)))

	// A carrier whose TTL runs out at the relay: its agent answers.
	fs = append(fs, untouched("ttl/relay/carrier-ttl-1", rel, Build(sp(17, CGNATPub, 20001, RelayAddr, 30000, 1)), xlat.ReasonTTLToAgent))

	// NAPT: LAN host's port unreachable about a remote's UDP packet.
	o = sp(17, Remote4, 80, LANHost4, 5000, 60)
	t = sp(17, RelayAddr, 30008, EdgeWAN, 20008, 60)
	add("icmp-error/edge-lan/napt-port-unreachable", lan,
		icmpErr(1, LANHost4, Remote4, 64, 3, 3, 0, emb(o, 28)),
		icmpErr(1, EdgeWAN, RelayAddr, 63, 3, 3, 0, keepL4Csum(emb(t, 28), emb(o, 28))))

	// Not translated: no mapping, no MTU, about a UDP carrier, ICMPv6
	// parameter problem, embedded packet too short.
	u := func(name string, role xlat.Role, in Spec) {
		fs = append(fs, untouched(name, role, Build(in), xlat.ReasonPassICMPOther))
	}
	u("icmp-error/v4-protocol-unreachable", wan, icmpErr(1, RelayAddr, EdgeWAN, 60, 3, 2, 0, emb(sp(6, EdgeWAN, 20000, RelayAddr, 30000, 40), 28)))
	u("icmp-error/v4-frag-needed-no-mtu", wan, icmpErr(1, RelayAddr, EdgeWAN, 60, 3, 4, 0, emb(sp(6, EdgeWAN, 20000, RelayAddr, 30000, 40), 28)))
	u("icmp-error/v6-parameter-problem", rel, icmpErr(58, router6, SiteHost, 64, 4, 0, 0, emb(sp(6, SiteHost, 40000, Remote6, 443, 50), 0)))
	u("icmp-error/about-udp-carrier", lan, icmpErr(58, SiteHost, Remote6, 64, 1, 4, 0, emb(Spec{Proto: 50, Src: Remote6, Dst: SiteHost, Payload: esp}, 0)))
	u("icmp-error/embedded-too-short", wan, icmpErr(1, RelayAddr, EdgeWAN, 60, 3, 4, 1380, emb(sp(6, EdgeWAN, 20000, RelayAddr, 30000, 40), 24)))
	fs = append(fs, untouched("icmp-error/ttl-1", rel, Build(icmpErr(58, router6, SiteHost, 1, 2, 0, 1400, emb(sp(6, SiteHost, 40000, Remote6, 443, 50), 0))), xlat.ReasonPassTTL))
	return fs
}
