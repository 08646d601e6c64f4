package cgnattest

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

var (
	sub, ext = xlat.RoleRelaySub, xlat.RoleRelayExt
	payload  = []byte("a subscriber's payload, some bytes")
)

func sp(proto uint8, s netip.Addr, sport uint16, d netip.Addr, dport uint16, ttl uint8) xlattest.Spec {
	return xlattest.Spec{Proto: proto, Src: s, SPort: sport, Dst: d, DPort: dport, TTL: ttl, TOS: 0x28, Payload: payload}
}

func flags(s xlattest.Spec, f uint8) xlattest.Spec { s.TCPFlags = f; return s }

func echo(s netip.Addr, d netip.Addr, id uint16, reply bool, ttl uint8) xlattest.Spec {
	x := sp(1, s, id, d, 0, ttl)
	if reply {
		x.SPort, x.DPort, x.Reply = 0, id, true
	}
	return x
}

func xl(name string, role xlat.Role, in, out xlattest.Spec) xlattest.Fixture {
	return xlattest.Fixture{Name: name, Role: role, In: xlattest.Build(in), Verdict: xlat.Pass, Out: xlattest.Build(out)}
}

func left(name string, role xlat.Role, in []byte, r xlat.Reason) xlattest.Fixture {
	return xlattest.Fixture{Name: name, Role: role, In: in, Verdict: r.Verdict(), Reason: r}
}

// xlOr is a translation in the modes that let it through, a filtered
// drop in the others.
func xlOr(name string, role xlat.Role, in, out xlattest.Spec, pass bool) xlattest.Fixture {
	if pass {
		return xl(name, role, in, out)
	}
	return left(name, role, xlattest.Build(in), xlat.ReasonDropCGNATFiltered)
}

// icmpErr is an ICMPv4 error from s to d quoting packet q (its IP packet).
func icmpErr(s, d netip.Addr, typ, code uint8, q []byte) xlattest.Spec {
	return xlattest.Spec{Proto: 1, Src: s, Dst: d, TTL: 64, ICMPType: typ, ICMPCode: code, Payload: q}
}

// quote is spec q as an error embeds it: its IP packet, cut to the IP
// header and 8 bytes more.
func quote(q xlattest.Spec) []byte { return xlattest.Build(q)[14 : 14+28] }

// quoteAs is q translated to t as the CGNAT writes it into an error: t's
// headers with q's L4 checksum (left as it was).
func quoteAs(q, t xlattest.Spec) []byte {
	a, b := quote(q), quote(t)
	off := map[uint8]int{6: 16, 17: 6, 1: 2}[q.Proto]
	if 20+off+2 <= len(b) {
		copy(b[20+off:20+off+2], a[20+off:20+off+2])
	}
	return b
}

// Fixtures are the CGNAT's cases in filtering mode f, NAT64's last
// (Fixtures64), in order: they
// share state (the mappings early ones make are used by later ones), so
// they run as a sequence on one datapath and one model. Translated
// outputs are built independently of the model, from the expected
// addresses and ports.
func Fixtures(f cgnat.Filtering) []xlattest.Fixture {
	c := Config(f)
	eif, adf := f == cgnat.EIF, f == cgnat.ADF
	p0, p1 := PortLo, PortLo+1 // the first ports a block gives, per protocol
	var fs []xlattest.Fixture
	add := func(x ...xlattest.Fixture) { fs = append(fs, x...) }

	// UDP: a mapping made by the first packet, used again, the same for
	// another remote (endpoint-independent mapping), and filtered by mode.
	add(
		xl("udp/out/new", sub, sp(17, SubA, 5000, R4, 53, 64), sp(17, Pub1, p0, R4, 53, 63)),
		xl("udp/out/established", sub, sp(17, SubA, 5000, R4, 53, 9), sp(17, Pub1, p0, R4, 53, 8)),
		xl("udp/out/eim-other-remote", sub, sp(17, SubA, 5000, R4b, 53, 64), sp(17, Pub1, p0, R4b, 53, 63)),
		xl("udp/out/second-mapping", sub, sp(17, SubA, 5001, R4, 53, 64), sp(17, Pub1, p1, R4, 53, 63)),
		xl("udp/in/reply", ext, sp(17, R4, 53, Pub1, p0, 60), sp(17, R4, 53, SubA, 5000, 59)),
		xlOr("udp/in/other-port", ext, sp(17, R4, 54, Pub1, p0, 60), sp(17, R4, 54, SubA, 5000, 59), !(f == cgnat.APDF)),
		xlOr("udp/in/other-addr", ext, sp(17, R4c, 53, Pub1, p0, 60), sp(17, R4c, 53, SubA, 5000, 59), eif),
		left("udp/in/no-mapping", ext, xlattest.Build(sp(17, R4, 53, Pub1, PortLo+39, 60)), xlat.ReasonDropCGNATNoMapping),
		left("udp/in/no-mapping-pub2", ext, xlattest.Build(sp(17, R4, 53, Pub2, 65535, 60)), xlat.ReasonDropCGNATNoMapping),
	)
	zero := sp(17, R4, 53, Pub1, p0, 60)
	zero.ZeroUDPCsum = true
	zout := sp(17, R4, 53, SubA, 5000, 59)
	zout.ZeroUDPCsum = true
	add(xl("udp/in/zero-checksum-kept", ext, zero, zout))

	// TCP: only a SYN makes a mapping; its state follows the segments.
	add(
		xl("tcp/out/syn", sub, flags(sp(6, SubA, 6000, R4, 443, 64), 0x02), flags(sp(6, Pub1, p0, R4, 443, 63), 0x02)),
		xl("tcp/in/syn-ack", ext, flags(sp(6, R4, 443, Pub1, p0, 50), 0x12), flags(sp(6, R4, 443, SubA, 6000, 49), 0x12)),
		xl("tcp/out/ack", sub, sp(6, SubA, 6000, R4, 443, 64), sp(6, Pub1, p0, R4, 443, 63)),
		left("tcp/out/not-syn", sub, xlattest.Build(sp(6, SubA, 6001, R4, 443, 64)), xlat.ReasonDropCGNATNotSYN),
		left("tcp/out/syn-ack-not-syn", sub, xlattest.Build(flags(sp(6, SubA, 6002, R4, 443, 64), 0x12)), xlat.ReasonDropCGNATNotSYN),
		xl("tcp/out/fin", sub, flags(sp(6, SubA, 6000, R4, 443, 64), 0x11), flags(sp(6, Pub1, p0, R4, 443, 63), 0x11)),
		xl("tcp/in/rst", ext, flags(sp(6, R4, 443, Pub1, p0, 50), 0x04), flags(sp(6, R4, 443, SubA, 6000, 49), 0x04)),
		xl("tcp/out/syn-again", sub, flags(sp(6, SubA, 6000, R4, 443, 64), 0x02), flags(sp(6, Pub1, p0, R4, 443, 63), 0x02)),
	)

	// ICMP echo by identifier.
	add(
		xl("icmp/out/echo", sub, echo(SubA, R4, 77, false, 64), echo(Pub1, R4, p0, false, 63)),
		xl("icmp/in/echo-reply", ext, echo(R4, Pub1, p0, true, 64), echo(R4, SubA, 77, true, 63)),
		left("icmp/in/echo-request-to-pool", ext, xlattest.Build(echo(R4, Pub1, 9, false, 64)), xlat.ReasonPassNotOurs),
		left("icmp/out/echo-reply", sub, xlattest.Build(echo(SubA, R4, 5, true, 64)), xlat.ReasonDropCGNATNoMapping),
	)

	// ICMP errors with their embedded packet (RFC 5508): inbound from a
	// router on the way (its address stays), outbound from the subscriber.
	out := sp(17, Pub1, p0, R4, 53, 63) // what A's packets look like outside
	add(
		xl("icmp-err/in/port-unreachable", ext,
			icmpErr(Rtr, Pub1, 3, 3, quote(out)),
			withTTL(icmpErr(Rtr, SubA, 3, 3, quoteAs(out, sp(17, SubA, 5000, R4, 53, 63))), 63)),
		xl("icmp-err/in/echo-time-exceeded", ext,
			icmpErr(Rtr, Pub1, 11, 0, quote(echo(Pub1, R4, p0, false, 1))),
			withTTL(icmpErr(Rtr, SubA, 11, 0, quoteAs(echo(Pub1, R4, p0, false, 1), echo(SubA, R4, 77, false, 1))), 63)),
		xl("icmp-err/in/tcp-frag-needed", ext,
			icmpErr(R4, Pub1, 3, 4, quote(sp(6, Pub1, p0, R4, 443, 60))),
			withTTL(icmpErr(R4, SubA, 3, 4, quoteAs(sp(6, Pub1, p0, R4, 443, 60), sp(6, SubA, 6000, R4, 443, 60))), 63)),
		xl("icmp-err/out/port-unreachable", sub,
			icmpErr(SubA, R4, 3, 3, quote(sp(17, R4, 53, SubA, 5000, 59))),
			withTTL(icmpErr(Pub1, R4, 3, 3, quoteAs(sp(17, R4, 53, SubA, 5000, 59), sp(17, R4, 53, Pub1, p0, 59))), 63)),
		left("icmp-err/out/no-mapping", sub, xlattest.Build(icmpErr(SubA, R4, 3, 3, quote(sp(17, R4, 53, SubA, 5999, 59)))), xlat.ReasonDropCGNATNoMapping),
		left("icmp-err/in/no-mapping", ext, xlattest.Build(icmpErr(Rtr, Pub1, 3, 3, quote(sp(17, Pub1, PortLo+30, R4, 53, 60)))), xlat.ReasonDropCGNATNoMapping),
		left("icmp-err/out/to-pool", sub, xlattest.Build(icmpErr(SubA, Pub2, 3, 3, quote(sp(17, Pub2, p0, SubA, 5000, 59)))), xlat.ReasonDropCGNATProto),
	)

	// Hairpin: A reaches B through B's public address:port, and B sees
	// A's (RFC 4787 REQ-9). The filters let A in once B sent to A's.
	add(
		xl("hairpin/b-out", sub, sp(17, SubB, 7000, R4, 53, 64), sp(17, Pub2, p0, R4, 53, 63)),
		xlOr("hairpin/a-to-b", sub, sp(17, SubA, 5000, Pub2, p0, 64), sp(17, Pub1, p0, SubB, 7000, 63), eif),
		xl("hairpin/b-to-a", sub, sp(17, SubB, 7000, Pub1, p0, 64), sp(17, Pub2, p0, SubA, 5000, 63)),
		xl("hairpin/a-to-b-after", sub, sp(17, SubA, 5000, Pub2, p0, 64), sp(17, Pub1, p0, SubB, 7000, 63)),
		left("hairpin/no-mapping", sub, xlattest.Build(sp(17, SubA, 5000, Pub2, PortLo+40, 64)), xlat.ReasonDropCGNATNoMapping),
		// A's SYN makes A's TCP mapping (its second port), then finds no
		// TCP mapping of B there; once B has one, A reaches it.
		left("hairpin/tcp-before-b", sub, xlattest.Build(flags(sp(6, SubA, 6100, Pub2, p0, 64), 0x02)), xlat.ReasonDropCGNATNoMapping),
		xl("hairpin/tcp-b-out", sub, flags(sp(6, SubB, 7100, R4, 443, 64), 0x02), flags(sp(6, Pub2, p0, R4, 443, 63), 0x02)),
		xlOr("hairpin/tcp-a-to-b", sub, flags(sp(6, SubA, 6100, Pub2, p0, 64), 0x02), flags(sp(6, Pub1, p1, SubB, 7100, 63), 0x02), eif),
		xl("hairpin/tcp-b-to-a", sub, flags(sp(6, SubB, 7100, Pub1, p1, 64), 0x12), flags(sp(6, Pub2, p0, SubA, 6100, 63), 0x12)),
		// The rest of the connection both ways (B's SYN/ACK let A in
		// in every mode), to the FINs: each segment's state bits noted
		// on both mappings' slots, outbound on the sender's, inbound on
		// the receiver's (compareState holds XDP's to the model's).
		xl("hairpin/tcp-a-ack", sub, sp(6, SubA, 6100, Pub2, p0, 64), sp(6, Pub1, p1, SubB, 7100, 63)),
		xl("hairpin/tcp-b-data", sub, sp(6, SubB, 7100, Pub1, p1, 64), sp(6, Pub2, p0, SubA, 6100, 63)),
		xl("hairpin/tcp-a-fin", sub, flags(sp(6, SubA, 6100, Pub2, p0, 64), 0x11), flags(sp(6, Pub1, p1, SubB, 7100, 63), 0x11)),
		xl("hairpin/tcp-b-fin", sub, flags(sp(6, SubB, 7100, Pub1, p1, 64), 0x11), flags(sp(6, Pub2, p0, SubA, 6100, 63), 0x11)),
	)
	_ = adf

	// Subscribers without a block, or spent; and what is not the CGNAT's.
	refused := xlattest.Build(sp(17, SubD, 5000, R4, 53, 64))
	add(
		left("sub/no-block-to-agent", sub, xlattest.Build(sp(17, SubC, 5000, R4, 53, 64)), xlat.ReasonCGNATNoBlock),
		xlattest.Fixture{Name: "sub/spent-refused", Role: sub, In: refused, Verdict: xlat.TX, Reason: xlat.ReasonCGNATRefused, Out: refusal(c, refused)},
		left("sub/spoofed-source", sub, xlattest.Build(sp(17, Spoofed, 5000, R4, 53, 64)), xlat.ReasonDropCGNATSource),
		left("sub/to-gateway", sub, xlattest.Build(sp(17, SubA, 5000, Gateway, 53, 64)), xlat.ReasonPassLocal),
		left("sub/to-inside", sub, xlattest.Build(sp(17, SubA, 5000, SubB, 53, 64)), xlat.ReasonPassLocal),
		left("sub/gre", sub, xlattest.Build(sp(47, SubA, 0, R4, 0, 64)), xlat.ReasonDropCGNATProto),
		left("sub/fragment", sub, xlattest.Build(frag(sp(17, SubA, 5000, R4, 53, 64))), xlat.ReasonDropCGNATFragment),
		left("sub/fragment-to-gateway", sub, xlattest.Build(frag(sp(17, SubA, 5000, Gateway, 53, 64))), xlat.ReasonPassFragment),
		left("sub/ip-options", sub, xlattest.Build(opt(sp(17, SubA, 5000, R4, 53, 64))), xlat.ReasonDropCGNATOptions),
		left("sub/ttl-1", sub, xlattest.Build(sp(17, SubA, 5000, R4, 53, 1)), xlat.ReasonPassTTL),
		left("sub/icmp-timestamp", sub, xlattest.Build(icmpErr(SubA, R4, 13, 0, make([]byte, 12))), xlat.ReasonDropCGNATProto),
		left("sub/ipv6", sub, xlattest.Build(sp(17, xlattest.SiteHost, 5000, xlattest.Remote6, 53, 64)), xlat.ReasonPassNotOurs),
		left("sub/martian-dst", sub, xlattest.Build(sp(17, SubA, 5000, netip.MustParseAddr("127.0.0.1"), 53, 64)), xlat.ReasonDropMartianDst),
		left("sub/echo-to-pool", sub, xlattest.Build(echo(SubA, Pub1, 3, false, 64)), xlat.ReasonPassLocal),
		left("sub/to-carrier-port", sub, xlattest.Build(flags(sp(6, SubA, 5000, Pub1, 30000, 64), 0x02)), xlat.ReasonPassLocal),
		left("sub/not-ip", sub, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x06, 0, 1}, xlat.ReasonPassNotIP),
		left("ext/fragment-to-pool", ext, xlattest.Build(frag(sp(17, R4, 53, Pub2, p0, 60))), xlat.ReasonDropCGNATFragment),
		left("ext/fragment-to-carrier-address", ext, xlattest.Build(frag(sp(17, R4, 53, Pub1, p0, 60))), xlat.ReasonPassFragment),
		left("ext/martian-source", ext, xlattest.Build(sp(17, netip.MustParseAddr("127.0.0.5"), 53, Pub1, p0, 60)), xlat.ReasonDropMartianLoopback),
		left("ext/ttl-1", ext, xlattest.Build(sp(17, R4, 53, Pub1, p0, 1)), xlat.ReasonPassTTL),
	)
	// Malformed from a subscriber: every header boundary cut, lengths
	// and checksums wrong.
	good := xlattest.Build(sp(17, SubA, 5000, R4, 53, 64))
	for _, n := range []int{14, 20, 33, 34, 38, 41} {
		r := xlat.ReasonDropTruncL3
		if n > 14+20-1 {
			r = xlat.ReasonDropBadLen
		}
		in := append([]byte(nil), good[:n]...)
		add(left("sub/truncated-"+itoa(n), sub, in, r))
	}
	bad := append([]byte(nil), good...)
	bad[24] ^= 0xff
	add(left("sub/bad-ipv4-checksum", sub, bad, xlat.ReasonDropBadCsum))
	short := append([]byte(nil), good...)
	short[14+20+5] = 4 // UDP length 4
	add(left("sub/udp-length", sub, short, xlat.ReasonDropBadLen))
	tcpShort := xlattest.Build(xlattest.Spec{Proto: 6, Src: SubA, Dst: R4, SPort: 1, DPort: 2, TCPFlags: 2})
	tcpShort = tcpShort[:14+20+12]
	tcpShort[16], tcpShort[17] = 0, 32
	add(left("sub/tcp-truncated", sub, xlattest.FixIPv4(tcpShort), xlat.ReasonDropTruncL4))
	// A subscriber's SYN whose TCP header is shorter than 20 bytes (data
	// offset 0, 3, 4) or runs past its IP packet (offset 15 with 34 bytes
	// of payload; the same with frame padding that would hold it) is
	// dropped by the parser, before the CGNAT looks: no mapping, no port
	// of the subscriber's taken. With offset 5 the same SYN makes its
	// mapping (SubA's third TCP port).
	syn := func(doff uint8, padding int) []byte {
		b := xlattest.SetTCPDataOffset(xlattest.Build(flags(sp(6, SubA, 6200, R4, 443, 64), 0x02)), doff)
		return append(b, make([]byte, padding)...)
	}
	add(
		left("sub/tcp-syn-data-offset-0", sub, syn(0, 0), xlat.ReasonDropBadTCPOffset),
		left("sub/tcp-syn-data-offset-3", sub, syn(3, 0), xlat.ReasonDropBadTCPOffset),
		left("sub/tcp-syn-data-offset-4", sub, syn(4, 0), xlat.ReasonDropBadTCPOffset),
		left("sub/tcp-syn-data-offset-15-past-packet", sub, syn(15, 0), xlat.ReasonDropBadTCPOffset),
		left("sub/tcp-syn-data-offset-15-in-frame-padding", sub, syn(15, 8), xlat.ReasonDropBadTCPOffset),
		left("ext/tcp-data-offset-3-to-mapping", ext, xlattest.SetTCPDataOffset(xlattest.Build(flags(sp(6, R4, 443, Pub1, p0, 50), 0x10)), 3), xlat.ReasonDropBadTCPOffset),
		xl("sub/tcp-syn-data-offset-5", sub, flags(sp(6, SubA, 6200, R4, 443, 64), 0x02), flags(sp(6, Pub1, PortLo+2, R4, 443, 63), 0x02)),
	)
	return append(fs, Fixtures64(f)...)
}

func withTTL(s xlattest.Spec, ttl uint8) xlattest.Spec { s.TTL = ttl; return s }
func frag(s xlattest.Spec) xlattest.Spec               { s.MoreFrags = true; return s }
func opt(s xlattest.Spec) xlattest.Spec                { s.IPv4Option = true; return s }

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// refusal is the expected answer to a refused packet, built from specs:
// ICMP type 3 code 13 from the gateway, quoting the packet, back to the
// sender's MAC.
func refusal(c cgnat.Config, in []byte) []byte {
	src := netip.AddrFrom4([4]byte(in[26:30]))
	b := xlattest.Build(xlattest.Spec{Proto: 1, Src: c.Gateway, Dst: src, TTL: 64, ICMPType: 3, ICMPCode: 13, Payload: in[14 : 14+28]})
	copy(b[0:6], in[6:12])
	copy(b[6:12], in[0:6])
	return b
}
