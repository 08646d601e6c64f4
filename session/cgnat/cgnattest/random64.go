package cgnattest

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

var (
	subs6     = []netip.Addr{A6, A6, A6b, C6, D6, Spoofed6, netip.MustParseAddr("2001:db8:600:1::7:1"), netip.MustParseAddr("2001:db8:600:ff::1")}
	otherPfx  = netip.MustParsePrefix("64:ff9b:1::/96")
	protos64  = []uint8{6, 17, 58, 58, 17, 6, 47, 1}
	remotes64 = []netip.Addr{R4, R4, R4b, R4c, Rtr, Pub1, Pub2, Gateway, SubB, netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("239.0.0.1")}
)

// mapping6 is one of the model's NAT64 mappings (ok false if none).
func (g *Gen) mapping6() (cgnat.Key, cgnat.Out, bool) {
	for range 8 {
		k, o, ok := g.mapping()
		if !ok {
			return k, o, false
		}
		if k.Addr.Is6() {
			return k, o, true
		}
	}
	return cgnat.Key{}, cgnat.Out{}, false
}

// proto6 is the IPv6 protocol of a mapping's (IPv4) key protocol.
func proto6(p uint8) uint8 {
	if p == 1 {
		return 58
	}
	return p
}

// spec6 is g.spec for IPv6 (ICMPv6 echo replies sometimes).
func (g *Gen) spec6(proto uint8, s netip.Addr, sport uint16, d netip.Addr, dport uint16) xlattest.Spec {
	x := g.spec(proto, s, sport, d, dport)
	x.IPv4Option, x.MoreFrags = false, false
	if proto == 58 && g.r.IntN(3) == 0 {
		x.Reply, x.SPort, x.DPort = true, 0, sport
	}
	return x
}

// packet64 is NAT64's share of Packet: from IPv6-only subscribers to
// the prefix (their mappings' keys often), to their mappings from the
// Internet, and ICMP errors about them both ways.
func (g *Gen) packet64() (xlat.Role, []byte) {
	pfx := g.c.Prefix()
	k, o, ok := g.mapping6()
	switch n := g.r.IntN(10); {
	case n < 5 || !ok: // from an IPv6-only subscriber
		pr := protos64[g.r.IntN(len(protos64))]
		src, sport := g.pick(subs6), g.port()
		if ok && g.r.IntN(2) == 0 {
			src, sport, pr = k.Addr, k.Port, proto6(k.Proto)
		}
		dst := xlat.Embed(pfx, g.pick(remotes64))
		switch g.r.IntN(10) {
		case 0:
			dst = xlattest.Remote6
		case 1:
			dst = xlat.Embed(otherPfx, R4)
		}
		b := xlattest.Build(g.spec6(pr, src, sport, dst, g.port()))
		if g.r.IntN(30) == 0 {
			b[14+6] = []uint8{0, 43, 44, 60}[g.r.IntN(4)]
		}
		return sub, b
	case n < 8: // to a NAT64 mapping from the Internet
		x := g.spec(k.Proto, g.pick(remotes[:5]), g.port(), o.Addr, o.Port)
		if g.r.IntN(2) == 0 {
			x.Src, x.SPort = R4, 53
		}
		if k.Proto == 1 {
			x.Reply, x.SPort, x.DPort = g.r.IntN(4) != 0, 0, o.Port
		}
		if g.r.IntN(8) == 0 { // about the subscriber link's MTU once IPv6
			x.Payload = make([]byte, 1440+g.r.IntN(20))
		}
		b := xlattest.Build(x)
		if g.r.IntN(4) == 0 { // DF clear
			b[14+6] &^= 0x40
			xlattest.FixIPv4(b)
		}
		return ext, b
	default: // ICMP errors about a NAT64 mapping's packets, both ways
		rem, rport := g.pick(remotes[:3]), g.port()
		if g.r.IntN(2) == 0 {
			typ, code := []uint8{3, 11, 3, 12}[g.r.IntN(4)], uint8(g.r.IntN(14))
			q := g.spec(k.Proto, o.Addr, o.Port, rem, rport)
			q.Reply, q.MoreFrags, q.IPv4Option = false, false, false
			if k.Proto == 1 {
				q.SPort, q.DPort = o.Port, 0
			}
			e := icmpErr(g.pick([]netip.Addr{Rtr, rem, Pub2}), o.Addr, typ, code, g.cut(quote2(q)))
			e.TTL = []uint8{64, 1, 9}[g.r.IntN(3)]
			if typ == 3 && code == 4 && g.r.IntN(2) == 0 {
				e = withRest(e, uint32(g.r.IntN(1600)))
			}
			return ext, xlattest.Build(e)
		}
		typ, code := []uint8{1, 2, 3, 4}[g.r.IntN(4)], uint8(g.r.IntN(6))
		q := g.spec6(proto6(k.Proto), xlat.Embed(pfx, rem), rport, k.Addr, k.Port)
		if k.Proto == 1 {
			q.Reply, q.SPort, q.DPort = true, 0, k.Port
		}
		qb := xlattest.Build(q)[14:]
		n := 48 + g.r.IntN(20)
		if g.r.IntN(8) == 0 {
			n = g.r.IntN(48)
		}
		e := icmp6Err(g.pick([]netip.Addr{k.Addr, A6b, Spoofed6}), xlat.Embed(pfx, rem), typ, code, uint32(g.r.IntN(1600)), qb[:min(n, len(qb))])
		return sub, xlattest.Build(e)
	}
}
