package xlattest

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/unmap-dev/unmap/session/xlat"
)

// Gen makes random and mutated packets around a World: most hit an entry
// or sit next to one, so every translation path and every check on the
// way to it is exercised. Deterministic for a given seed.
type Gen struct {
	r    *rand.Rand
	keys []xlat.Key
	addr []netip.Addr
}

// NewGen returns a generator for the world's keys.
func NewGen(w *Tables, seed uint64) *Gen {
	g := &Gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for k := range w.Flows {
		g.keys = append(g.keys, k)
	}
	slices.SortFunc(g.keys, func(a, b xlat.Key) int {
		return cmp.Or(a.Src.Compare(b.Src), a.Dst.Compare(b.Dst), cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.SPort, b.SPort), cmp.Compare(a.DPort, b.DPort))
	})
	g.addr = []netip.Addr{SiteHost, Remote6, EdgeWAN, RelayAddr, CGNATPub, LANHost4, SitePub4, Remote4, EdgeLocal,
		netip.MustParseAddr("2001:db8:1::99"), netip.MustParseAddr("2001:db8:7::1"), netip.MustParseAddr("ff02::1"),
		netip.MustParseAddr("fe80::1"), netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("100.64.9.9"),
		// martian.go's classes and the other site, as sources and destinations
		netip.MustParseAddr("::"), netip.MustParseAddr("::1"), netip.MustParseAddr("::ffff:198.51.100.50"),
		netip.MustParseAddr("::203.0.113.7"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("169.254.1.1"), netip.MustParseAddr("224.0.0.5"), netip.MustParseAddr("255.255.255.255"),
		OtherSitePub, netip.MustParseAddr("2001:db8:3::5")}
	return g
}

var protos = []uint8{6, 17, 1, 58, 50, 47, 132, 0, 43, 44, 60, 59}

// Packet returns a packet and the role to run it through.
func (g *Gen) Packet() (xlat.Role, []byte) {
	role := xlat.Role(g.r.IntN(3))
	var b []byte
	switch n := g.r.IntN(10); {
	case n < 6: // an entry's key, random shape
		k := g.keys[g.r.IntN(len(g.keys))]
		b = Build(g.spec(k))
	case n < 7: // an ICMP error about a packet of an entry's flow
		k := g.keys[g.r.IntN(len(g.keys))]
		o := g.spec(xlat.Key{Proto: k.Proto, Src: k.Dst, Dst: k.Src, SPort: k.DPort, DPort: k.SPort})
		o.ICMPType, o.IPv4Option, o.MoreFrags = 0, false, false
		if o.Proto == 1 || o.Proto == 58 {
			o.Reply = k.SPort != 0
		}
		in := emb(o, 0)
		if g.r.IntN(4) == 0 { // a quoted header's data offset is not checked
			in = embOff(o, 0, uint8(g.r.IntN(16)))
		}
		if g.r.IntN(2) == 0 {
			in = in[:min(len(in), ipHdrLen(in)+8+g.r.IntN(16))]
		}
		s := xlattest4or6(k, g.addr[g.r.IntN(len(g.addr))])
		s.TTL = uint8(g.r.IntN(256))
		s.Payload = in
		if k.Src.Is4() {
			s.Proto, s.ICMPType, s.ICMPCode = 1, []uint8{3, 11, 3}[g.r.IntN(3)], uint8(g.r.IntN(16))
		} else {
			s.Proto, s.ICMPType, s.ICMPCode = 58, uint8(1+g.r.IntN(4)), uint8(g.r.IntN(5))
		}
		s.ICMPRest = [4]byte{0, 0, byte(g.r.IntN(8)), byte(g.r.Uint32())}
		b = Build(s)
	case n < 9: // random addresses and ports around the world's
		s := g.addr[g.r.IntN(len(g.addr))]
		d := g.addr[g.r.IntN(len(g.addr))]
		for s.Is4() != d.Is4() {
			d = g.addr[g.r.IntN(len(g.addr))]
		}
		k := xlat.Key{Proto: protos[g.r.IntN(len(protos))], Src: s, Dst: d, SPort: g.port(), DPort: g.port()}
		if (k.Proto == 1 && !s.Is4()) || (k.Proto == 58 && s.Is4()) {
			k.Proto = 17
		}
		b = Build(g.spec(k))
	default: // noise behind an IP ethertype
		b = make([]byte, 15+g.r.IntN(120))
		for i := range b {
			b[i] = byte(g.r.Uint32())
		}
		b[12], b[13] = 0x08, 0x00
		if g.r.IntN(2) == 0 {
			b[12], b[13] = 0x86, 0xdd
		}
		b[14] = byte(0x45)
		if b[12] == 0x86 {
			b[14] = 0x60
		}
	}
	if g.r.IntN(10) == 0 {
		// Any TCP data offset (other packets are left as they are):
		// under 5, a header past the packet, or options inside it.
		SetTCPDataOffset(b, uint8(g.r.IntN(16)))
	}
	if g.r.IntN(2) == 0 {
		b = g.mutate(b)
	}
	return role, b
}

func (g *Gen) port() uint16 {
	ports := []uint16{0, 443, 40000, 30000, 20000, 20001, 25000, 39999, 40001, 5000, 80, 77, 99}
	if g.r.IntN(4) == 0 {
		return uint16(g.r.Uint32())
	}
	return ports[g.r.IntN(len(ports))]
}

func (g *Gen) spec(k xlat.Key) Spec {
	ttls := []uint8{0, 1, 2, 64, 255}
	s := Spec{Proto: k.Proto, Src: k.Src, Dst: k.Dst, SPort: k.SPort, DPort: k.DPort,
		TTL: ttls[g.r.IntN(len(ttls))], TOS: uint8(g.r.Uint32())}
	if s.TTL == 0 {
		s.TTL = uint8(g.r.Uint32())
	}
	if (k.Proto == 1 || k.Proto == 58) && k.SPort == 0 {
		s.Reply = true
	}
	if g.r.IntN(20) == 0 {
		s.ICMPType = uint8(g.r.IntN(256))
	}
	n := g.r.IntN(100)
	if g.r.IntN(10) == 0 {
		n = g.r.IntN(1500)
	}
	s.Payload = make([]byte, n)
	for i := range s.Payload {
		s.Payload[i] = byte(g.r.Uint32())
	}
	s.ZeroUDPCsum = g.r.IntN(10) == 0
	s.FlowLabel = g.r.Uint32() & 0xfffff
	s.IPv4Option = g.r.IntN(30) == 0
	s.MoreFrags = g.r.IntN(30) == 0
	return s
}

// mutate damages a packet: byte flips and interesting values in the
// headers, truncation, trailing bytes; usually the IPv4 checksum is fixed
// afterwards so the damage reaches the checks behind it.
func (g *Gen) mutate(b []byte) []byte {
	b = append([]byte(nil), b...)
	interesting := []byte{0, 1, 2, 4, 5, 6, 8, 17, 20, 40, 44, 58, 0x40, 0x45, 0x46, 0x60, 0x7f, 0x80, 0xff}
	for range 1 + g.r.IntN(3) {
		if len(b) <= 14 {
			break
		}
		i := 14 + g.r.IntN(min(len(b)-14, 60))
		switch g.r.IntN(4) {
		case 0:
			b[i] ^= 1 << g.r.IntN(8)
		case 1:
			b[i] = interesting[g.r.IntN(len(interesting))]
		case 2:
			b = b[:14+g.r.IntN(len(b)-14)]
		case 3:
			b = append(b, make([]byte, g.r.IntN(8))...)
		}
	}
	if g.r.IntN(10) < 7 && len(b) >= 34 && b[12] == 0x08 {
		FixIPv4(b)
	}
	return b
}

// xlattest4or6 is an error's outer header: from a random address of the
// key's family (or the key's own destination) towards its source.
func xlattest4or6(k xlat.Key, a netip.Addr) Spec {
	src := k.Dst
	if a.Is4() == k.Src.Is4() {
		src = a
	}
	return Spec{Src: src, Dst: k.Src}
}
