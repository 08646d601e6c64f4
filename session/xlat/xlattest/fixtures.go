package xlattest

import (
	"fmt"
	"net/netip"

	"github.com/unmap-dev/unmap/session/xlat"
)

// Fixture is one table case: a packet, the role of the program it enters,
// and what must happen to it in the World tables with forwarding off.
type Fixture struct {
	Name    string
	Role    xlat.Role
	In      []byte
	Verdict xlat.Verdict
	Reason  xlat.Reason
	Out     []byte // expected output if translated; nil: leaves untouched
}

var (
	lan, wan, rel = xlat.RoleEdgeLAN, xlat.RoleEdgeWAN, xlat.RoleRelayExt
	hello         = []byte("hello, unmap: a payload of some bytes")
	esp           = []byte{0, 0, 0, 9, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
)

func sp(proto uint8, s netip.Addr, sport uint16, d netip.Addr, dport uint16, ttl uint8) Spec {
	return Spec{Proto: proto, Src: s, SPort: sport, Dst: d, DPort: dport, TTL: ttl, TOS: 0xb9, Payload: hello}
}

func xl(name string, role xlat.Role, in, out Spec) Fixture {
	return Fixture{Name: name, Role: role, In: Build(in), Verdict: xlat.Pass, Out: Build(out)}
}

func untouched(name string, role xlat.Role, in []byte, r xlat.Reason) Fixture {
	return Fixture{Name: name, Role: role, In: in, Verdict: r.Verdict(), Reason: r}
}

// Fixtures returns the table cases: every translation rule both ways at
// each end, then everything that must pass or drop untouched.
func Fixtures() []Fixture {
	var fs []Fixture
	for _, pr := range []uint8{6, 17} {
		n := map[uint8]string{6: "tcp", 17: "udp"}[pr]
		fs = append(fs,
			xl(n+"/edge-lan/v6-to-carrier", lan, sp(pr, SiteHost, 40000, Remote6, 443, 64), sp(pr, EdgeWAN, 20000, RelayAddr, 30000, 63)),
			xl(n+"/edge-wan/carrier-to-v6", wan, sp(pr, RelayAddr, 30000, EdgeWAN, 20000, 60), sp(pr, Remote6, 443, SiteHost, 40000, 59)),
			xl(n+"/relay/carrier-to-v6", rel, sp(pr, CGNATPub, 20001, RelayAddr, 30000, 50), sp(pr, SiteHost, 40000, Remote6, 443, 49)),
			xl(n+"/relay/v6-to-carrier", rel, sp(pr, Remote6, 443, SiteHost, 40000, 2), sp(pr, RelayAddr, 30000, CGNATPub, 20001, 1)),
			xl(n+"/edge-lan/napt", lan, sp(pr, LANHost4, 5000, Remote4, 80, 64), sp(pr, EdgeWAN, 20008, RelayAddr, 30008, 63)),
			xl(n+"/edge-wan/napt", wan, sp(pr, RelayAddr, 30008, EdgeWAN, 20008, 64), sp(pr, Remote4, 80, LANHost4, 5000, 63)),
			xl(n+"/relay/napt-carrier", rel, sp(pr, CGNATPub, 20009, RelayAddr, 30008, 64), sp(pr, SitePub4, 5000, Remote4, 80, 63)),
			xl(n+"/relay/napt-inbound", rel, sp(pr, Remote4, 80, SitePub4, 5000, 64), sp(pr, RelayAddr, 30008, CGNATPub, 20009, 63)),
		)
	}
	// Carrier keepalives: consumed on native and wrapping UDP carriers,
	// at the relay and (harmlessly) at the edge; one byte more or a
	// different payload is an ordinary datagram of the flow.
	ka := xlat.KeepaliveMagic[:]
	keepalive := func(s Spec) Spec { s.Payload = ka; return s }
	near := func(s Spec, p []byte) Spec { s.Payload = p; return s }
	fs = append(fs,
		untouched("keepalive/relay/udp-carrier", rel, Build(keepalive(sp(17, CGNATPub, 20001, RelayAddr, 30000, 64))), xlat.ReasonKeepalive),
		untouched("keepalive/relay/wrap-carrier", rel, Build(keepalive(sp(17, CGNATPub, 20005, RelayAddr, 30004, 64))), xlat.ReasonKeepalive),
		untouched("keepalive/edge-wan/udp-carrier", wan, Build(keepalive(sp(17, RelayAddr, 30000, EdgeWAN, 20000, 64))), xlat.ReasonKeepalive),
		xl("keepalive/relay/one-byte-more", rel, near(sp(17, CGNATPub, 20001, RelayAddr, 30000, 64), append(append([]byte{}, ka...), '!')),
			near(sp(17, SiteHost, 40000, Remote6, 443, 63), append(append([]byte{}, ka...), '!'))),
		untouched("keepalive/relay/token", rel, Build(near(sp(17, CGNATPub, 20001, RelayAddr, 30000, 64), xlat.TokenKeepalive(0x0102030405060708))), xlat.ReasonKeepalive),
		xl("keepalive/relay/token-one-byte-more", rel, near(sp(17, CGNATPub, 20001, RelayAddr, 30000, 64), append(xlat.TokenKeepalive(1), '!')),
			near(sp(17, SiteHost, 40000, Remote6, 443, 63), append(xlat.TokenKeepalive(1), '!'))),
		// An IPv4 flow's carrier (NAPT44) consumes them too, a proof
		// included (its secret never reaches the remote); the same
		// payload from the remote to the site's public IPv4 is the
		// flow's.
		untouched("keepalive/relay/napt-carrier", rel, Build(keepalive(sp(17, CGNATPub, 20009, RelayAddr, 30008, 64))), xlat.ReasonKeepalive),
		untouched("keepalive/relay/napt-carrier-token", rel, Build(near(sp(17, CGNATPub, 20009, RelayAddr, 30008, 64), xlat.TokenKeepalive(0x0102030405060708))), xlat.ReasonKeepalive),
		xl("keepalive/relay/napt-inbound", rel, keepalive(sp(17, Remote4, 80, SitePub4, 5000, 64)), keepalive(sp(17, RelayAddr, 30008, CGNATPub, 20009, 63))),
		xl("keepalive/edge-lan/napt", lan, keepalive(sp(17, LANHost4, 5000, Remote4, 80, 64)), keepalive(sp(17, EdgeWAN, 20008, RelayAddr, 30008, 63))),
		xl("keepalive/relay/other-payload", rel, near(sp(17, CGNATPub, 20001, RelayAddr, 30000, 64), []byte("unmap-kb")),
			near(sp(17, SiteHost, 40000, Remote6, 443, 63), []byte("unmap-kb"))),
	)
	// Flow label is not carried; a TCP packet whose checksum ends up 0xffff/0 is covered by the random corpus.
	fl := sp(6, SiteHost, 40000, Remote6, 443, 64)
	fl.FlowLabel = 0xabcde
	fs = append(fs, xl("tcp/edge-lan/flow-label-dropped", lan, fl, sp(6, EdgeWAN, 20000, RelayAddr, 30000, 63)))
	// FIN and RST are translated like any segment, and mark the entry
	// (Result.TCPEnd) so the agents time the connection out early.
	fin, finOut := sp(6, SiteHost, 40000, Remote6, 443, 64), sp(6, EdgeWAN, 20000, RelayAddr, 30000, 63)
	fin.TCPFlags, finOut.TCPFlags = 0x11, 0x11
	rst, rstOut := sp(6, CGNATPub, 20001, RelayAddr, 30000, 64), sp(6, SiteHost, 40000, Remote6, 443, 63)
	rst.TCPFlags, rstOut.TCPFlags = 0x14, 0x14
	fs = append(fs, xl("tcp/edge-lan/fin-to-carrier", lan, fin, finOut), xl("tcp/relay/carrier-rst-to-v6", rel, rst, rstOut))
	// NAPT keeps a zero UDP checksum.
	z, zo := sp(17, LANHost4, 5000, Remote4, 80, 64), sp(17, EdgeWAN, 20008, RelayAddr, 30008, 63)
	z.ZeroUDPCsum, zo.ZeroUDPCsum = true, true
	fs = append(fs, xl("udp/edge-lan/napt-zero-csum-kept", lan, z, zo))

	// ICMP echo, native both ways.
	echo := func(proto uint8, s netip.Addr, d netip.Addr, id uint16, reply bool, ttl uint8) Spec {
		x := Spec{Proto: proto, Src: s, Dst: d, Reply: reply, TTL: ttl, Payload: hello}
		if reply {
			x.DPort = id
		} else {
			x.SPort = id
		}
		return x
	}
	fs = append(fs,
		xl("echo/edge-lan/v6-request-to-carrier", lan, echo(58, SiteHost, Remote6, 77, false, 64), echo(1, EdgeWAN, RelayAddr, 20002, false, 63)),
		xl("echo/edge-wan/carrier-reply-to-v6", wan, echo(1, RelayAddr, EdgeWAN, 20002, true, 60), echo(58, Remote6, SiteHost, 77, true, 59)),
		xl("echo/relay/carrier-request-to-v6", rel, echo(1, CGNATPub, RelayAddr, 20003, false, 60), echo(58, SiteHost, Remote6, 77, false, 59)),
		xl("echo/relay/v6-reply-to-carrier", rel, echo(58, Remote6, SiteHost, 77, true, 60), echo(1, RelayAddr, CGNATPub, 20003, true, 59)),
		xl("echo/edge-lan/napt", lan, echo(1, LANHost4, Remote4, 55, false, 64), echo(1, EdgeWAN, RelayAddr, 20010, false, 63)),
		xl("echo/edge-wan/napt-reply", wan, echo(1, RelayAddr, EdgeWAN, 20010, true, 64), echo(1, Remote4, LANHost4, 55, true, 63)),
	)

	// UDP carriers: ESP both ways, inbound ICMPv6 echo and its reply.
	raw := func(proto uint8, s, d netip.Addr, ttl uint8, payload []byte) Spec {
		return Spec{Proto: proto, Src: s, Dst: d, TTL: ttl, TOS: 0x2a, Payload: payload}
	}
	udp0 := func(s netip.Addr, sport uint16, d netip.Addr, dport uint16, ttl uint8, payload []byte) Spec {
		return Spec{Proto: 17, Src: s, SPort: sport, Dst: d, DPort: dport, TTL: ttl, TOS: 0x2a, Payload: payload, ZeroUDPCsum: true}
	}
	ping := echo(58, Remote6, SiteHost, 99, false, 64)
	ping.TOS = 0x2a
	pingMsg := L4(Build(ping))
	pong := echo(58, SiteHost, Remote6, 99, true, 64)
	pong.TOS = 0x2a
	pongMsg := L4(Build(pong))
	pingIn := ping
	pingIn.TTL = 30
	pingOut := ping
	pingOut.TTL = 29
	unwrapCsum := udp0(RelayAddr, 30006, EdgeWAN, 20006, 30, pingMsg)
	unwrapCsum.ZeroUDPCsum = false // a carrier with a checksum unwraps the same
	fs = append(fs,
		xl("wrap/edge-lan/esp", lan, raw(50, SiteHost, Remote6, 64, esp), udp0(EdgeWAN, 20004, RelayAddr, 30004, 63, esp)),
		xl("wrap/edge-wan/esp-unwrap", wan, udp0(RelayAddr, 30004, EdgeWAN, 20004, 40, esp), raw(50, Remote6, SiteHost, 39, esp)),
		xl("wrap/relay/esp-unwrap", rel, udp0(CGNATPub, 20005, RelayAddr, 30004, 40, esp), raw(50, SiteHost, Remote6, 39, esp)),
		xl("wrap/relay/esp-wrap", rel, raw(50, Remote6, SiteHost, 64, esp), udp0(RelayAddr, 30004, CGNATPub, 20005, 63, esp)),
		xl("wrap/relay/inbound-echo", rel, ping, udp0(RelayAddr, 30006, CGNATPub, 20007, 63, pingMsg)),
		xl("wrap/edge-wan/inbound-echo-unwrap", wan, unwrapCsum, pingOut),
		xl("wrap/edge-lan/echo-reply", lan, pong, udp0(EdgeWAN, 20006, RelayAddr, 30006, 63, pongMsg)),
	)
	_ = pingIn

	// Everything that is not translated.
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	tcp6 := sp(6, SiteHost, 40000, Remote6, 443, 64)
	tcp4 := sp(6, RelayAddr, 30000, EdgeWAN, 20000, 64)
	with := func(s Spec, f func(*Spec)) Spec { f(&s); return s }
	fs = append(fs,
		untouched("pass/arp", lan, arp, xlat.ReasonPassNotIP),
		untouched("pass/v6-multicast", lan, Build(with(tcp6, func(s *Spec) { s.Dst = netip.MustParseAddr("ff02::1") })), xlat.ReasonPassLocal),
		untouched("pass/v6-link-local", lan, Build(with(tcp6, func(s *Spec) { s.Dst = netip.MustParseAddr("fe80::1") })), xlat.ReasonPassLocal),
		untouched("pass/v4-broadcast", wan, Build(with(tcp4, func(s *Spec) { s.Dst = netip.MustParseAddr("255.255.255.255") })), xlat.ReasonPassLocal),
		untouched("pass/edge-lan/router-itself", lan, Build(with(tcp6, func(s *Spec) { s.Dst = EdgeLocal })), xlat.ReasonPassLocal),
		untouched("pass/edge-lan/other-site-segment", lan, Build(with(tcp6, func(s *Spec) { s.Dst = netip.MustParseAddr("2001:db8:1:2::5") })), xlat.ReasonPassLocal),
		untouched("miss/edge-lan/new-v6-flow", lan, Build(with(tcp6, func(s *Spec) { s.SPort = 40001 })), xlat.ReasonMiss),
		untouched("miss/edge-lan/new-v6-flow-hop-limit-1", lan, Build(with(tcp6, func(s *Spec) { s.SPort = 40001; s.TTL = 1 })), xlat.ReasonTTLToAgent),
		untouched("pass/edge-lan/v4-not-ours", lan, Build(sp(6, LANHost4, 5001, Remote4, 80, 64)), xlat.ReasonPassNotOurs),
		untouched("pass/edge-wan/control-channel", wan, Build(sp(17, RelayAddr, 443, EdgeWAN, 50000, 64)), xlat.ReasonPassNotOurs),
		untouched("miss/edge-wan/carrier-range", wan, Build(sp(17, RelayAddr, 30010, EdgeWAN, 25000, 64)), xlat.ReasonMiss),
		untouched("pass/edge-wan/echo-reply-in-range", wan, Build(echo(1, RelayAddr, EdgeWAN, 25000, true, 64)), xlat.ReasonPassNotOurs),
		untouched("pass/relay/echo-request-in-range", rel, Build(echo(1, CGNATPub, RelayAddr, 25000, false, 64)), xlat.ReasonPassNotOurs),
		untouched("pass/edge-wan/echo-not-carrier", wan, Build(echo(1, RelayAddr, EdgeWAN, 7, true, 64)), xlat.ReasonPassNotOurs),
		untouched("miss/relay/site-prefix", rel, Build(sp(6, Remote6, 444, SiteHost, 22, 64)), xlat.ReasonMiss),
		untouched("miss/relay/site-public-v4", rel, Build(sp(6, Remote4, 444, SitePub4, 22, 64)), xlat.ReasonMiss),
		untouched("miss/relay/carrier-range", rel, Build(sp(6, CGNATPub, 1234, RelayAddr, 30001, 64)), xlat.ReasonMiss),
		untouched("pass/relay/not-ours", rel, Build(sp(6, Remote6, 444, netip.MustParseAddr("2001:db8:9::1"), 22, 64)), xlat.ReasonPassNotOurs),
		untouched("pass/relay/own-port", rel, Build(sp(17, CGNATPub, 1234, RelayAddr, 443, 64)), xlat.ReasonPassNotOurs),
		untouched("ttl/edge-lan/v6-hop-limit-1", lan, Build(with(tcp6, func(s *Spec) { s.TTL = 1 })), xlat.ReasonTTLToAgent),
		untouched("pass/ttl-1-v4", wan, Build(with(tcp4, func(s *Spec) { s.TTL = 1 })), xlat.ReasonPassTTL),
		untouched("pass/ipv4-options", wan, Build(with(tcp4, func(s *Spec) { s.IPv4Option = true })), xlat.ReasonPassIPOptions),
		untouched("pass/ipv4-fragment", wan, Build(with(tcp4, func(s *Spec) { s.MoreFrags = true })), xlat.ReasonPassFragment),
		untouched("pass/ipv6-fragment-header", lan, Build(raw(44, SiteHost, Remote6, 64, esp)), xlat.ReasonPassFragment),
		untouched("pass/ipv6-hop-by-hop", lan, Build(raw(0, SiteHost, Remote6, 64, esp)), xlat.ReasonPassIPv6Ext),
		untouched("pass/ipv6-routing", rel, Build(raw(43, Remote6, SiteHost, 64, esp)), xlat.ReasonPassIPv6Ext),
		untouched("pass/icmp-dest-unreachable", wan, Build(Spec{Proto: 1, Src: RelayAddr, Dst: EdgeWAN, ICMPType: 3, Payload: hello}), xlat.ReasonPassICMPOther),
		untouched("pass/icmpv6-packet-too-big", rel, Build(Spec{Proto: 58, Src: Remote6, Dst: SiteHost, ICMPType: 2, Payload: hello}), xlat.ReasonPassICMPOther),
		untouched("drop/v6-udp-zero-csum", lan, Build(with(sp(17, SiteHost, 40000, Remote6, 443, 64), func(s *Spec) { s.ZeroUDPCsum = true })), xlat.ReasonDropUDPZeroCsum),
		untouched("drop/v4-native-carrier-zero-csum", wan, Build(with(sp(17, RelayAddr, 30000, EdgeWAN, 20000, 64), func(s *Spec) { s.ZeroUDPCsum = true })), xlat.ReasonDropUDPZeroCsum),
		untouched("drop/bad-entry", rel, Build(sp(6, Remote4, 81, SitePub4, 5001, 64)), xlat.ReasonDropBadEntry),
	)
	fs = append(fs, errorFixtures()...)
	fs = append(fs, martianFixtures()...)
	fs = append(fs, malformed(tcp4, tcp6)...)
	return fs
}

// malformed mutates good packets: bad version, IHL, lengths, checksum,
// and truncation at every header boundary (frame cut short, or IP length
// leaving the L4 header incomplete).
func malformed(tcp4, tcp6 Spec) []Fixture {
	var fs []Fixture
	mut := func(name string, role xlat.Role, s Spec, r xlat.Reason, f func([]byte) []byte) {
		fs = append(fs, untouched(name, role, f(Build(s)), r))
	}
	mut("drop/v4-version-5", wan, tcp4, xlat.ReasonDropBadIP, func(b []byte) []byte { b[14] = 0x55; return FixIPv4(b) })
	mut("drop/v4-ihl-4", wan, tcp4, xlat.ReasonDropBadIP, func(b []byte) []byte { b[14] = 0x44; return b })
	mut("drop/v4-bad-csum", wan, tcp4, xlat.ReasonDropBadCsum, func(b []byte) []byte { b[24] ^= 0x10; return b })
	mut("drop/v4-total-length-too-big", wan, tcp4, xlat.ReasonDropBadLen, func(b []byte) []byte { b[17]++; return FixIPv4(b) })
	mut("drop/v4-total-length-below-header", wan, tcp4, xlat.ReasonDropBadLen, func(b []byte) []byte { b[16], b[17] = 0, 19; return FixIPv4(b) })
	mut("drop/v6-version-4", lan, tcp6, xlat.ReasonDropBadIP, func(b []byte) []byte { b[14] = 0x40 | b[14]&0xf; return b })
	mut("drop/v6-payload-length-too-big", lan, tcp6, xlat.ReasonDropBadLen, func(b []byte) []byte { b[19]++; return b })
	udp6 := tcp6
	udp6.Proto = 17
	mut("drop/udp-length-mismatch", lan, udp6, xlat.ReasonDropBadLen, func(b []byte) []byte { b[54+5]--; return b })
	fs = append(fs, tcpDataOffset()...)
	// Padding after the IP packet (Ethernet minimum frame) is fine.
	fs = append(fs, Fixture{Name: "tcp/edge-wan/padded-frame", Role: wan,
		In:  append(Build(sp(6, RelayAddr, 30000, EdgeWAN, 20000, 64)), 0, 0, 0, 0),
		Out: append(Build(sp(6, Remote6, 443, SiteHost, 40000, 63)), 0, 0, 0, 0), Verdict: xlat.Pass})

	for _, c := range []struct {
		role  xlat.Role
		s     Spec
		ipLen int
		l4min int
	}{
		{wan, tcp4, 20, 20}, {lan, tcp6, 40, 20},
		{wan, with17(tcp4), 20, 8}, {lan, with17(tcp6), 40, 8},
		{wan, Spec{Proto: 1, Src: RelayAddr, Dst: EdgeWAN, DPort: 20002, Reply: true}, 20, 8},
		{lan, Spec{Proto: 58, Src: SiteHost, Dst: Remote6, SPort: 77}, 40, 8},
	} {
		full := Build(c.s)
		fam := "v4"
		if c.ipLen == 40 {
			fam = "v6"
		}
		for _, cut := range []int{14, 14 + c.ipLen/2, 14 + c.ipLen - 1} {
			fs = append(fs, untouched(fmt.Sprintf("drop/%s-proto-%d-cut-at-%d", fam, c.s.Proto, cut), c.role, full[:cut], xlat.ReasonDropTruncL3))
		}
		for _, cut := range []int{14 + c.ipLen, 14 + c.ipLen + c.l4min/2, 14 + c.ipLen + c.l4min - 1} {
			fs = append(fs, untouched(fmt.Sprintf("drop/%s-proto-%d-cut-at-%d", fam, c.s.Proto, cut), c.role, full[:cut], xlat.ReasonDropBadLen))
			short := append([]byte(nil), full[:cut]...)
			l := cut - 14
			if c.ipLen == 20 {
				short[16], short[17] = byte(l>>8), byte(l)
				FixIPv4(short)
			} else {
				l -= 40
				short[18], short[19] = byte(l>>8), byte(l)
			}
			fs = append(fs, untouched(fmt.Sprintf("drop/%s-proto-%d-l4-short-%d", fam, c.s.Proto, cut), c.role, short, xlat.ReasonDropTruncL4))
		}
	}
	return fs
}

func with17(s Spec) Spec { s.Proto = 17; return s }

// tcpDataOffset: a TCP segment's header is as long as its data offset
// says (x 4 bytes). Under 20 bytes, or past the IP packet (Ethernet
// padding behind the packet does not count), it is dropped; 5, and
// options that stay inside the packet, are translated. Each on both
// families (a carrier in at the edge, a site's IPv6 out of it).
func tcpDataOffset() []Fixture {
	var fs []Fixture
	for _, c := range []struct {
		fam     string
		role    xlat.Role
		in, out Spec
	}{
		{"v4", wan, sp(6, RelayAddr, 30000, EdgeWAN, 20000, 60), sp(6, Remote6, 443, SiteHost, 40000, 59)},
		{"v6", lan, sp(6, SiteHost, 40000, Remote6, 443, 64), sp(6, EdgeWAN, 20000, RelayAddr, 30000, 63)},
	} {
		// hello is 37 bytes: a header of 56 (offset 14) fits the
		// segment's 57, one of 60 (offset 15) does not.
		pad := func(b []byte) []byte { return append(b, make([]byte, 8)...) }
		for _, x := range []struct {
			name string
			doff uint8
			in   func([]byte) []byte
			ok   bool
		}{
			{"0", 0, nil, false},
			{"4", 4, nil, false},
			{"5", 5, nil, true},
			{"14-options-in-packet", 14, nil, true},
			{"15-past-packet", 15, nil, false},
			{"15-past-packet-in-frame-padding", 15, pad, false},
		} {
			in := SetTCPDataOffset(Build(c.in), x.doff)
			if x.in != nil {
				in = x.in(in)
			}
			name := fmt.Sprintf("%s-tcp-data-offset-%s", c.fam, x.name)
			if !x.ok {
				fs = append(fs, untouched("drop/"+name, c.role, in, xlat.ReasonDropBadTCPOffset))
				continue
			}
			fs = append(fs, Fixture{Name: "tcp/" + name, Role: c.role, In: in, Verdict: xlat.Pass,
				Out: SetTCPDataOffset(Build(c.out), x.doff)})
		}
	}
	return fs
}
