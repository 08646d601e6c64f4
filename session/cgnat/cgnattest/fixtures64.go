package cgnattest

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// echo6 is an ICMPv6 echo request (or reply) with identifier id.
func echo6(s, d netip.Addr, id uint16, reply bool, ttl uint8) xlattest.Spec {
	x := sp(58, s, id, d, 0, ttl)
	if reply {
		x.SPort, x.DPort, x.Reply = 0, id, true
	}
	return x
}

// quote6As is IPv4 spec q translated to IPv6 spec t as an ICMPv6 error
// embeds it: t's IPv6 header and first 8 L4 bytes, with q's L4
// checksum (the translator leaves it).
func quote6As(q, t xlattest.Spec) []byte {
	a, b := quote(q), xlattest.Build(t)[14:14+48]
	off := map[uint8]int{6: 16, 17: 6, 1: 2}[q.Proto]
	if 40+off+2 <= len(b) {
		copy(b[40+off:40+off+2], a[20+off:20+off+2])
	}
	return b
}

// quote4As is IPv6 spec q translated to IPv4 spec t as an ICMPv4 error
// embeds it (the other way).
func quote4As(q, t xlattest.Spec) []byte {
	a, b := xlattest.Build(q)[14:14+48], quote(t)
	off := map[uint8]int{6: 16, 17: 6, 58: 2}[q.Proto]
	copy(b[20+off:20+off+2], a[40+off:40+off+2])
	return b
}

// icmp6Err is an ICMPv6 error from s to d with bytes 4-7 rest, quoting q.
func icmp6Err(s, d netip.Addr, typ, code uint8, rest uint32, q []byte) xlattest.Spec {
	x := xlattest.Spec{Proto: 58, Src: s, Dst: d, TTL: 64, ICMPType: typ, ICMPCode: code, Payload: q}
	binary.BigEndian.PutUint32(x.ICMPRest[:], rest)
	return x
}

func withRest(x xlattest.Spec, rest uint32) xlattest.Spec {
	binary.BigEndian.PutUint32(x.ICMPRest[:], rest)
	return x
}

// v6 sets a built IPv6 frame's next header (a fragment or extension
// header the parser stops at; the bytes behind are left as they are).
func nextHeader(b []byte, nh uint8) []byte { b[14+6] = nh; return b }

// Fixtures64 are NAT64's cases in mode f, run after Fixtures on the same
// state: IPv6-only subscribers to IPv4 servers at the mode's NAT64
// prefix, and the answers back, built independently of the model.
func Fixtures64(f cgnat.Filtering) []xlattest.Fixture {
	c := Config(f)
	pfx := c.Prefix()
	P := func(a netip.Addr) netip.Addr { return xlat.Embed(pfx, a) }
	q0 := PortLo + uint16(c.BlockSize()) // A6's block: the second of Pub1
	var fs []xlattest.Fixture
	add := func(x ...xlattest.Fixture) { fs = append(fs, x...) }

	// UDP: the first packet makes the mapping; another host of the same
	// /64 takes the next port of the same block; answers come back from
	// the server's address in the prefix.
	add(
		xl("nat64/udp/out/new", sub, sp(17, A6, 5000, P(R4), 53, 64), sp(17, Pub1, q0, R4, 53, 63)),
		xl("nat64/udp/out/established", sub, sp(17, A6, 5000, P(R4), 53, 9), sp(17, Pub1, q0, R4, 53, 8)),
		xl("nat64/udp/out/eim-other-remote", sub, sp(17, A6, 5000, P(R4b), 53, 64), sp(17, Pub1, q0, R4b, 53, 63)),
		xl("nat64/udp/out/same-64-other-host", sub, sp(17, A6b, 5000, P(R4), 53, 64), sp(17, Pub1, q0+1, R4, 53, 63)),
		xl("nat64/udp/in/reply", ext, sp(17, R4, 53, Pub1, q0, 60), sp(17, P(R4), 53, A6, 5000, 59)),
		xl("nat64/udp/in/reply-other-host", ext, sp(17, R4, 53, Pub1, q0+1, 60), sp(17, P(R4), 53, A6b, 5000, 59)),
		xlOr("nat64/udp/in/other-port", ext, sp(17, R4, 54, Pub1, q0, 60), sp(17, P(R4), 54, A6, 5000, 59), f != cgnat.APDF),
		xlOr("nat64/udp/in/other-addr", ext, sp(17, R4c, 53, Pub1, q0, 60), sp(17, P(R4c), 53, A6, 5000, 59), f == cgnat.EIF),
	)
	zin := sp(17, R4, 53, Pub1, q0, 60)
	zin.ZeroUDPCsum = true
	zout := sp(17, A6, 5000, P(R4), 53, 64)
	zout.ZeroUDPCsum = true
	add(
		left("nat64/udp/in/zero-checksum", ext, xlattest.Build(zin), xlat.ReasonDropUDPZeroCsum),
		left("nat64/udp/out/zero-checksum", sub, xlattest.Build(zout), xlat.ReasonDropUDPZeroCsum),
	)
	// Full MTU: 1480 bytes of IPv4 are 1500 of IPv6; one more does not
	// fit the subscriber link: with DF, the server is told (from the pool
	// address, next-hop MTU 1480); without, dropped.
	big := func(n int) xlattest.Spec { x := sp(17, R4, 53, Pub1, q0, 60); x.Payload = make([]byte, n-28); return x }
	fits, fitsOut := big(1480), sp(17, P(R4), 53, A6, 5000, 59)
	fitsOut.Payload = fits.Payload
	tooBig := xlattest.Build(big(1481))
	noDF := xlattest.Build(big(1481))
	noDF[14+6] = 0
	add(
		xl("nat64/udp/in/1480-fits", ext, fits, fitsOut),
		xlattest.Fixture{Name: "nat64/udp/in/1481-df-too-big", Role: ext, In: tooBig, Verdict: xlat.TX, Reason: xlat.ReasonNAT64TooBig, Out: fragNeeded(tooBig, 1480)},
		left("nat64/udp/in/1481-no-df", ext, xlattest.FixIPv4(noDF), xlat.ReasonDropNAT64TooBig),
	)
	private := sp(17, A6, 5000, P(netip.MustParseAddr("10.1.2.3")), 53, 64)
	if pfx == xlat.WKP {
		add(left("nat64/udp/out/private-under-wkp", sub, xlattest.Build(private), xlat.ReasonDropNAT64Dst))
	} else {
		add(xl("nat64/udp/out/private-under-nsp", sub, private, sp(17, Pub1, q0, netip.MustParseAddr("10.1.2.3"), 53, 63)))
	}

	// TCP: a SYN makes the mapping, its state follows the segments.
	add(
		xl("nat64/tcp/out/syn", sub, flags(sp(6, A6, 6000, P(R4), 443, 64), 0x02), flags(sp(6, Pub1, q0, R4, 443, 63), 0x02)),
		xl("nat64/tcp/in/syn-ack", ext, flags(sp(6, R4, 443, Pub1, q0, 50), 0x12), flags(sp(6, P(R4), 443, A6, 6000, 49), 0x12)),
		xl("nat64/tcp/out/ack", sub, sp(6, A6, 6000, P(R4), 443, 64), sp(6, Pub1, q0, R4, 443, 63)),
		left("nat64/tcp/out/not-syn", sub, xlattest.Build(sp(6, A6, 6001, P(R4), 443, 64)), xlat.ReasonDropCGNATNotSYN),
		xl("nat64/tcp/out/fin", sub, flags(sp(6, A6, 6000, P(R4), 443, 64), 0x11), flags(sp(6, Pub1, q0, R4, 443, 63), 0x11)),
		xl("nat64/tcp/in/fin", ext, flags(sp(6, R4, 443, Pub1, q0, 50), 0x11), flags(sp(6, P(R4), 443, A6, 6000, 49), 0x11)),
	)

	// ICMPv6 echo <-> ICMP echo by identifier.
	add(
		xl("nat64/icmp/out/echo", sub, echo6(A6, P(R4), 77, false, 64), echo(Pub1, R4, q0, false, 63)),
		xl("nat64/icmp/in/echo-reply", ext, echo(R4, Pub1, q0, true, 64), echo6(P(R4), A6, 77, true, 63)),
		left("nat64/icmp/out/echo-reply", sub, xlattest.Build(echo6(A6, P(R4), 5, true, 64)), xlat.ReasonDropCGNATNoMapping),
	)

	// ICMP errors with their embedded packet (RFC 7915 4.2, 5.2; RFC
	// 6146 3.5.3): from a router on the way, its address in the prefix;
	// from the server itself; from the subscriber.
	outside := sp(17, Pub1, q0, R4, 53, 63)
	inside := sp(17, A6, 5000, P(R4), 53, 63)
	add(
		xl("nat64/icmp-err/in/port-unreachable-router", ext,
			icmpErr(Rtr, Pub1, 3, 3, quote(outside)),
			withTTL(icmp6Err(P(Rtr), A6, 1, 4, 0, quote6As(outside, inside)), 63)),
		xl("nat64/icmp-err/in/port-unreachable-server", ext,
			icmpErr(R4, Pub1, 3, 3, quote(outside)),
			withTTL(icmp6Err(P(R4), A6, 1, 4, 0, quote6As(outside, inside)), 63)),
		xl("nat64/icmp-err/in/tcp-frag-needed", ext,
			withRest(icmpErr(R4, Pub1, 3, 4, quote(sp(6, Pub1, q0, R4, 443, 60))), 1400),
			withTTL(icmp6Err(P(R4), A6, 2, 0, 1420, quote6As(sp(6, Pub1, q0, R4, 443, 60), sp(6, A6, 6000, P(R4), 443, 60))), 63)),
		xl("nat64/icmp-err/in/echo-time-exceeded", ext,
			icmpErr(Rtr, Pub1, 11, 0, quote(echo(Pub1, R4, q0, false, 1))),
			withTTL(icmp6Err(P(Rtr), A6, 3, 0, 0, quote6As(echo(Pub1, R4, q0, false, 1), echo6(A6, P(R4), 77, false, 1))), 63)),
		left("nat64/icmp-err/in/frag-needed-no-mtu", ext,
			xlattest.Build(icmpErr(R4, Pub1, 3, 4, quote(sp(6, Pub1, q0, R4, 443, 60)))), xlat.ReasonPassICMPOther),
		xl("nat64/icmp-err/out/port-unreachable", sub,
			icmp6Err(A6, P(R4), 1, 4, 0, xlattest.Build(sp(17, P(R4), 53, A6, 5000, 59))[14:14+48]),
			withTTL(icmpErr(Pub1, R4, 3, 3, quote4As(sp(17, P(R4), 53, A6, 5000, 59), sp(17, R4, 53, Pub1, q0, 59))), 63)),
		left("nat64/icmp-err/out/no-mapping", sub,
			xlattest.Build(icmp6Err(A6, P(R4), 1, 4, 0, xlattest.Build(sp(17, P(R4), 53, A6, 5999, 59))[14:14+48])), xlat.ReasonDropCGNATNoMapping),
	)

	// Subscribers without a block, or spent; what NAT64 refuses.
	refused := xlattest.Build(sp(17, D6, 5000, P(R4), 53, 64))
	add(
		left("nat64/no-block-to-agent", sub, xlattest.Build(sp(17, C6, 5000, P(R4), 53, 64)), xlat.ReasonCGNATNoBlock),
		xlattest.Fixture{Name: "nat64/spent-refused", Role: sub, In: refused, Verdict: xlat.TX, Reason: xlat.ReasonCGNATRefused, Out: refusal6(refused)},
		left("nat64/spoofed-source", sub, xlattest.Build(sp(17, Spoofed6, 5000, P(R4), 53, 64)), xlat.ReasonDropNAT64Source),
		left("nat64/native-ipv6", sub, xlattest.Build(sp(17, A6, 5000, xlattest.Remote6, 53, 64)), xlat.ReasonPassNotOurs),
		left("nat64/to-pool", sub, xlattest.Build(sp(17, A6, 5000, P(Pub2), PortLo, 64)), xlat.ReasonDropNAT64Hairpin),
		left("nat64/to-inside", sub, xlattest.Build(sp(17, A6, 5000, P(SubB), 53, 64)), xlat.ReasonDropNAT64Dst),
		left("nat64/to-gateway", sub, xlattest.Build(sp(17, A6, 5000, P(Gateway), 53, 64)), xlat.ReasonDropNAT64Dst),
		left("nat64/to-loopback", sub, xlattest.Build(sp(17, A6, 5000, P(netip.MustParseAddr("127.0.0.1")), 53, 64)), xlat.ReasonDropMartianDst),
		left("nat64/to-multicast", sub, xlattest.Build(sp(17, A6, 5000, P(netip.MustParseAddr("239.1.1.1")), 53, 64)), xlat.ReasonDropMartianDst),
		left("nat64/gre", sub, xlattest.Build(sp(47, A6, 0, P(R4), 0, 64)), xlat.ReasonDropCGNATProto),
		left("nat64/icmpv4-in-ipv6", sub, xlattest.Build(sp(1, A6, 0, P(R4), 0, 64)), xlat.ReasonDropCGNATProto),
		left("nat64/ttl-1", sub, xlattest.Build(sp(17, A6, 5000, P(R4), 53, 1)), xlat.ReasonPassTTL),
		left("nat64/fragment", sub, nextHeader(xlattest.Build(sp(17, A6, 5000, P(R4), 53, 64)), 44), xlat.ReasonDropCGNATFragment),
		left("nat64/hop-by-hop", sub, nextHeader(xlattest.Build(sp(17, A6, 5000, P(R4), 53, 64)), 0), xlat.ReasonDropNAT64Ext),
		left("nat64/hop-by-hop-native", sub, nextHeader(xlattest.Build(sp(17, A6, 5000, xlattest.Remote6, 53, 64)), 0), xlat.ReasonPassIPv6Ext),
		left("nat64/icmpv6-other", sub, xlattest.Build(icmp6Err(A6, P(R4), 4, 0, 0, make([]byte, 48))), xlat.ReasonDropCGNATProto),
		left("nat64/hairpin-44-to-64", sub, xlattest.Build(sp(17, SubA, 5000, Pub1, q0, 64)), xlat.ReasonDropNAT64Hairpin),
	)
	for _, n := range []int{14, 40, 53, 54, 61} {
		in := xlattest.Build(sp(17, A6, 5000, P(R4), 53, 64))[:n]
		r := xlat.ReasonDropTruncL3
		if n >= 54 {
			r = xlat.ReasonDropBadLen
		}
		add(left(fmt.Sprintf("nat64/truncated-%d", n), sub, in, r))
	}

	// A6's /64 fills its block to the warn level: the datapath asks the
	// agent for the next block, naming the /64 (compareState).
	for i := range int(c.WarnAt()) - 2 {
		add(xl(fmt.Sprintf("nat64/udp/out/fill-%d", i), sub, sp(17, A6, uint16(9000+i), P(R4), 53, 64), sp(17, Pub1, q0+2+uint16(i), R4, 53, 63)))
	}
	return fs
}

// fragNeeded is the expected answer to an IPv4 packet too big for NAT64:
// ICMP type 3 code 4 with next-hop MTU mtu from the pool address it was
// sent to, quoting it, back to the sender's MAC.
func fragNeeded(in []byte, mtu uint16) []byte {
	src, dst := netip.AddrFrom4([4]byte(in[26:30])), netip.AddrFrom4([4]byte(in[30:34]))
	x := xlattest.Spec{Proto: 1, Src: dst, Dst: src, TTL: 64, ICMPType: 3, ICMPCode: 4, Payload: in[14 : 14+28]}
	binary.BigEndian.PutUint32(x.ICMPRest[:], uint32(mtu))
	b := xlattest.Build(x)
	copy(b[0:6], in[6:12])
	copy(b[6:12], in[0:6])
	return b
}

// refusal6 is the expected answer to a refused NAT64 packet, built from
// specs: ICMPv6 type 1 code 1 from its destination, quoting it, back to
// the sender's MAC.
func refusal6(in []byte) []byte {
	src := netip.AddrFrom16([16]byte(in[22:38]))
	dst := netip.AddrFrom16([16]byte(in[38:54]))
	b := xlattest.Build(icmp6Err(dst, src, 1, 1, 0, in[14:14+48]))
	copy(b[0:6], in[6:12])
	copy(b[6:12], in[0:6])
	return b
}
