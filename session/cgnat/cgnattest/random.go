package cgnattest

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// Gen makes random and mutated packets around the CGNAT world: most from
// subscribers or to the mappings the model holds at the time (it reads
// the State it is given), so every path and every check on the way is
// taken; some are the carriers' (xlattest.Gen), some noise.
// Deterministic for a seed and the same sequence of states.
type Gen struct {
	r    *rand.Rand
	c    *cgnat.Config
	s    *cgnat.State
	xg   *xlattest.Gen
	outs []cgnat.Key // s.Out's keys, sorted, rebuilt when it grows
	// NAT64Only makes every packet NAT64's (packet64): the IPv6-only
	// subscribers', the Internet's to their mappings, errors about them.
	NAT64Only bool

	// doff draws the bent TCP data offsets, a stream of its own so the
	// rest of the corpus stays as it was; next is the packet the last
	// bent one came from, returned next.
	doff     *rand.Rand
	next     []byte
	nextRole xlat.Role
}

// NewGen returns a generator for the world of c, reading s.
func NewGen(c *cgnat.Config, s *cgnat.State, w *xlattest.Tables, seed uint64) *Gen {
	return &Gen{r: rand.New(rand.NewPCG(seed, seed^0x51ed27)), doff: rand.New(rand.NewPCG(seed, seed^0x0ff5e7)),
		c: c, s: s, xg: xlattest.NewGen(w, seed)}
}

var (
	subs    = []netip.Addr{SubA, SubA, SubB, SubC, SubD, Spoofed, Gateway, netip.MustParseAddr("100.64.0.77")}
	remotes = []netip.Addr{R4, R4b, R4c, Rtr, Pub1, Pub2, Gateway, SubB, netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("0.0.0.7"), netip.MustParseAddr("224.0.0.5"), netip.MustParseAddr("127.0.0.5")}
	tcpFlags = []uint8{0x02, 0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x03}
)

func (g *Gen) pick(as []netip.Addr) netip.Addr { return as[g.r.IntN(len(as))] }

func (g *Gen) port(base ...uint16) uint16 {
	if g.r.IntN(5) == 0 {
		return uint16(g.r.Uint32())
	}
	if len(base) > 0 && g.r.IntN(2) == 0 {
		return base[g.r.IntN(len(base))]
	}
	return []uint16{53, 443, 5000, 5001, 5002, 6000, 7000, PortLo, PortLo + 1, PortLo + 2, 30000, 65535, 0}[g.r.IntN(13)]
}

func (g *Gen) proto() uint8 { return []uint8{6, 17, 1, 17, 6, 47}[g.r.IntN(6)] }

func (g *Gen) spec(proto uint8, s netip.Addr, sport uint16, d netip.Addr, dport uint16) xlattest.Spec {
	x := xlattest.Spec{Proto: proto, Src: s, SPort: sport, Dst: d, DPort: dport,
		TTL: []uint8{64, 64, 1, 2, 255, uint8(g.r.Uint32())}[g.r.IntN(6)], TOS: uint8(g.r.Uint32())}
	if proto == 6 {
		x.TCPFlags = tcpFlags[g.r.IntN(len(tcpFlags))]
	}
	if proto == 1 && g.r.IntN(3) == 0 {
		x.Reply, x.SPort, x.DPort = true, 0, sport
	}
	x.Payload = make([]byte, g.r.IntN(64))
	for i := range x.Payload {
		x.Payload[i] = byte(g.r.Uint32())
	}
	x.ZeroUDPCsum = g.r.IntN(15) == 0
	x.IPv4Option = g.r.IntN(40) == 0
	x.MoreFrags = g.r.IntN(40) == 0
	return x
}

// mapping is one of the model's mappings (ok false if none yet).
func (g *Gen) mapping() (cgnat.Key, cgnat.Out, bool) {
	if len(g.outs) != len(g.s.Out) {
		g.outs = g.outs[:0]
		for k := range g.s.Out {
			g.outs = append(g.outs, k)
		}
		slices.SortFunc(g.outs, func(a, b cgnat.Key) int {
			return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
		})
	}
	if len(g.outs) == 0 {
		return cgnat.Key{}, cgnat.Out{}, false
	}
	k := g.outs[g.r.IntN(len(g.outs))]
	return k, g.s.Out[k], true
}

// Packet returns a packet and the program to run it through.
func (g *Gen) Packet() (xlat.Role, []byte) {
	if b := g.next; b != nil {
		g.next = nil
		return g.nextRole, b
	}
	var role xlat.Role
	var b []byte
	if g.NAT64Only {
		role, b = g.packet64()
	} else {
		role, b = g.packet()
	}
	if g.r.IntN(3) == 0 {
		b = g.mutate(b)
	}
	if g.doff.IntN(12) == 0 {
		// A TCP segment with any other data offset (under 5, a header
		// past the packet, or options inside it), then the segment
		// itself next time: a malformed SYN must leave the mapping to
		// its good twin, and the corpus stays as it was around it.
		bent := xlattest.SetTCPDataOffset(slices.Clone(b), uint8(g.doff.IntN(16)))
		if !slices.Equal(bent, b) {
			g.next, g.nextRole = b, role
			return role, bent
		}
	}
	return role, b
}

func (g *Gen) packet() (xlat.Role, []byte) {
	k, o, ok := g.mapping()
	switch n := g.r.IntN(26); {
	case n >= 20 || ok && k.Addr.Is6(): // NAT64's (its mappings too)
		return g.packet64()
	case n < 7: // from a subscriber
		pr := g.proto()
		src, sport := g.pick(subs), g.port()
		if ok && g.r.IntN(2) == 0 {
			src, sport, pr = k.Addr, k.Port, k.Proto
		}
		dst, dport := g.pick(remotes), g.port()
		if g.r.IntN(3) == 0 {
			dst, dport = R4, 53 // the remote the Internet side answers from most
		}
		if ok && g.r.IntN(4) == 0 { // hairpin to a mapping
			_, o2, _ := g.mapping()
			dst, dport = o2.Addr, o2.Port
		}
		return sub, xlattest.Build(g.spec(pr, src, sport, dst, dport))
	case n < 13 && ok: // to a mapping from the Internet
		x := g.spec(k.Proto, g.pick(remotes[:5]), g.port(), o.Addr, o.Port)
		if g.r.IntN(2) == 0 {
			x.Src, x.SPort = R4, 53
		}
		if k.Proto == 1 {
			x.Reply, x.SPort, x.DPort = g.r.IntN(4) != 0, 0, o.Port
		}
		return ext, xlattest.Build(x)
	case n < 14: // to a pool port, maybe nobody's
		return ext, xlattest.Build(g.spec(g.proto(), g.pick(remotes[:4]), g.port(), g.pick([]netip.Addr{Pub1, Pub2}), g.port(PortLo+uint16(g.r.IntN(600)))))
	case n < 16 && ok: // ICMP errors about a mapping's packets, both ways
		typ, code := []uint8{3, 11, 3, 12}[g.r.IntN(4)], uint8(g.r.IntN(14))
		rem, rport := g.pick(remotes[:3]), g.port()
		if g.r.IntN(2) == 0 {
			q := g.spec(k.Proto, o.Addr, o.Port, rem, rport)
			q.Reply, q.MoreFrags, q.IPv4Option = false, false, false
			if k.Proto == 1 {
				q.SPort, q.DPort = o.Port, 0
			}
			e := icmpErr(g.pick([]netip.Addr{Rtr, rem, Pub2}), o.Addr, typ, code, g.cut(quote2(q)))
			e.TTL = []uint8{64, 1, 9}[g.r.IntN(3)]
			return ext, xlattest.Build(e)
		}
		q := g.spec(k.Proto, rem, rport, k.Addr, k.Port)
		q.MoreFrags, q.IPv4Option = false, false
		if k.Proto == 1 {
			q.Reply, q.SPort, q.DPort = true, 0, k.Port
		}
		e := icmpErr(g.pick([]netip.Addr{k.Addr, SubB, Spoofed}), rem, typ, code, g.cut(quote2(q)))
		return sub, xlattest.Build(e)
	case n < 18: // the carriers' packets, through either program
		_, b := g.xg.Packet()
		if g.r.IntN(2) == 0 {
			return sub, b
		}
		return ext, b
	default: // noise behind IPv4
		b := make([]byte, 15+g.r.IntN(100))
		for i := range b {
			b[i] = byte(g.r.Uint32())
		}
		b[12], b[13], b[14] = 0x08, 0x00, 0x45
		if g.r.IntN(2) == 0 {
			return sub, b
		}
		return ext, b
	}
}

// quote2 is the whole IP packet of q.
func quote2(q xlattest.Spec) []byte { return xlattest.Build(q)[14:] }

// cut is an error's quote: usually the header and 8 bytes, sometimes
// less (then the error is not the CGNAT's) or more.
func (g *Gen) cut(q []byte) []byte {
	n := 28 + g.r.IntN(20)
	if g.r.IntN(8) == 0 {
		n = g.r.IntN(28)
	}
	return q[:min(n, len(q))]
}

// mutate damages a packet: byte flips and interesting values in the
// headers, truncation, trailing bytes; usually the IPv4 checksum is fixed
// after, so the damage reaches the checks behind it.
func (g *Gen) mutate(b []byte) []byte {
	b = append([]byte(nil), b...)
	interesting := []byte{0, 1, 2, 3, 6, 8, 11, 13, 17, 20, 0x12, 0x40, 0x45, 0x46, 0xa0, 0xff}
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
		xlattest.FixIPv4(b)
	}
	return b
}
