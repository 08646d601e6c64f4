package cgnat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/unmap-dev/unmap/session/xlat"
)

// NAT64 (RFC 6146) for IPv6-only subscribers, on the same pool, blocks,
// planes and filters as NAT44 (xdp/bpf/nat64.h is the datapath's).
//
// A NAT64 subscriber is a /64 of the inside IPv6 prefix, not one address:
// a host picks its addresses in its /64 itself (SLAAC, temporary
// addresses, RFC 8981) and may change them at will, so a quota per
// address would be a quota per whim, and the log would name addresses
// nobody assigned. The /64 is what the operator delegates and can name
// to a customer; every address in it shares the /64's blocks. Mappings
// still key on the whole address and port, so two hosts of a /64 never
// share a mapping.

// Inside6 bounds: /44 to /64, at most 1 << 20 subscribers (their records
// are an array of 24 bytes each).
const (
	MinInside6Bits = 44
	subBits6       = 64
)

// NAT64 reports whether c translates IPv6-only subscribers.
func (c *Config) NAT64() bool { return c.Enabled() && c.Inside6.IsValid() }

// Prefix is the NAT64 prefix: Prefix64, or the well-known 64:ff9b::/96.
func (c *Config) Prefix() netip.Prefix {
	if c.Prefix64.IsValid() {
		return c.Prefix64
	}
	return xlat.WKP
}

// Subscribers6 is the /64s of the inside IPv6 prefix.
func (c *Config) Subscribers6() int {
	if !c.Inside6.IsValid() {
		return 0
	}
	return 1 << (subBits6 - c.Inside6.Bits())
}

// LinkMTU6 is MTU6 with its default.
func (c *Config) LinkMTU6() int {
	if c.MTU6 != 0 {
		return c.MTU6
	}
	return 1500
}

func (c *Config) validate64() error {
	if c.MTU6 != 0 && (c.MTU6 < 1280 || c.MTU6 > 9000) {
		return fmt.Errorf("cgnat: NAT64 link MTU %d: want 1280 to 9000", c.MTU6)
	}
	if !c.Inside6.IsValid() {
		if c.Prefix64.IsValid() {
			return errors.New("cgnat: a NAT64 prefix without an inside IPv6 prefix")
		}
		return nil
	}
	in := c.Inside6
	switch {
	case !in.Addr().Is6() || in.Addr().Is4In6() || in.Bits() < MinInside6Bits || in.Bits() > subBits6:
		return fmt.Errorf("cgnat: inside IPv6 prefix %v: want IPv6, /%d to /%d", in, MinInside6Bits, subBits6)
	case in.Masked() != in:
		return fmt.Errorf("cgnat: inside IPv6 prefix %v has host bits set", in)
	}
	p := c.Prefix()
	switch {
	case !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() != 96:
		return fmt.Errorf("cgnat: NAT64 prefix %v: want an IPv6 /96 (RFC 6052 2.2)", p)
	case p.Masked() != p:
		return fmt.Errorf("cgnat: NAT64 prefix %v has host bits set", p)
	case hi64(p.Addr()) == 0:
		return fmt.Errorf("cgnat: NAT64 prefix %v is in ::/64, whose IPv4-compatible and -mapped addresses no wire carries", p)
	case p.Overlaps(in):
		return fmt.Errorf("cgnat: NAT64 prefix %v overlaps the inside IPv6 prefix %v", p, in)
	}
	return nil
}

func hi64(a netip.Addr) uint64 {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8])
}

// SubOf is the subscriber address a belongs to: a itself (IPv4), or the
// first address of its /64.
func (c *Config) SubOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	p, _ := a.Prefix(subBits6)
	return p.Addr()
}

// isSub reports whether sub names a subscriber: an address of the
// inside prefix, or the first address of a /64 of the inside IPv6 one.
func (c *Config) isSub(sub netip.Addr) bool {
	if sub.Is4() {
		return c.inside(sub)
	}
	return c.NAT64() && c.Inside6.Contains(sub) && c.SubOf(sub) == sub
}

// SubIndex is subscriber sub's record in the datapath (cg_subs): the
// IPv4 subscribers first, then the /64s.
func (c *Config) SubIndex(sub netip.Addr) (uint32, bool) {
	if !c.isSub(sub) {
		return 0, false
	}
	if sub.Is4() {
		return u32(sub) - u32(c.Inside.Addr()), true
	}
	return uint32(c.Subscribers()) + uint32(hi64(sub)-hi64(c.Inside6.Addr())), true
}

// SubAt is the subscriber of record i (SubIndex's inverse).
func (c *Config) SubAt(i uint32) (netip.Addr, bool) {
	if int(i) < c.Subscribers() {
		return addr4(u32(c.Inside.Addr()) + i), true
	}
	i -= uint32(c.Subscribers())
	if int(i) >= c.Subscribers6() {
		return netip.Addr{}, false
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi64(c.Inside6.Addr())+uint64(i))
	return netip.AddrFrom16(b), true
}

// proto4 is the IPv4 protocol an IPv6 one maps to (cg_proto4), 0 if none.
func proto4(p uint8) uint8 {
	switch p {
	case protoTCP, protoUDP:
		return p
	case protoICMPv6:
		return protoICMP
	}
	return 0
}

// dst64 is why NAT64 does not reach IPv4 address d (cg_dst64), or
// ReasonNone.
func (c *Config) dst64(d netip.Addr) xlat.Reason {
	b := d.As4()
	switch {
	case b[0] == 0 || b[0] == 127 || b[0] >= 224 || b[0] == 169 && b[1] == 254:
		return xlat.ReasonDropMartianDst
	case c.inPool(d):
		return xlat.ReasonDropNAT64Hairpin
	case c.inside(d) || d == c.Gateway:
		return xlat.ReasonDropNAT64Dst
	case c.Prefix() == xlat.WKP && (b[0] == 10 || b[0] == 172 && b[1]&0xf0 == 16 || b[0] == 192 && b[1] == 168 || b[0] == 100 && b[1]&0xc0 == 64):
		return xlat.ReasonDropNAT64Dst // RFC 6052 3.1: no private address under the well-known prefix
	}
	return xlat.ReasonNone
}

func outerSrc6(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b[ethLen+8 : ethLen+24])) }
func outerDst6(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b[ethLen+24 : ethLen+40])) }

// unparsed64: IPv6 parse left, to the NAT64 prefix (cg_unparsed64).
func (c *Config) unparsed64(b []byte, r xlat.Reason) xlat.Reason {
	if len(b) < ethLen+40 || !c.NAT64() || !c.Prefix().Contains(outerDst6(b)) {
		return r
	}
	switch r {
	case xlat.ReasonPassFragment:
		return xlat.ReasonDropCGNATFragment
	case xlat.ReasonPassIPv6Ext:
		return xlat.ReasonDropNAT64Ext
	case xlat.ReasonPassICMPOther:
		return xlat.ReasonDropCGNATProto
	}
	return r
}

// udpZero reports a plain UDP datagram without a checksum.
func udpZero(d xlat.Parsed, b []byte) bool {
	return d.Key.Proto == protoUDP && !d.ICMPError && binary.BigEndian.Uint16(b[d.L4+6:]) == 0
}

// embedded is the IPv4 address in the last 32 bits of a.
func embedded(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:16]))
}

// sub64 is Sub for IPv6 (cg_sub64).
func sub64(c *Config, s *State, d xlat.Parsed, b []byte) xlat.Result {
	if !c.NAT64() || !c.Prefix().Contains(d.Key.Dst) {
		return untouched(b, xlat.ReasonPassNotOurs)
	}
	if !c.Inside6.Contains(outerSrc6(b)) {
		return untouched(b, xlat.ReasonDropNAT64Source)
	}
	dst := embedded(d.Key.Dst)
	if r := c.dst64(dst); r != xlat.ReasonNone {
		return untouched(b, r)
	}
	proto := proto4(d.Key.Proto)
	pl := plane(proto)
	if pl < 0 {
		return untouched(b, xlat.ReasonDropCGNATProto)
	}
	if pl == 2 && !d.EchoRequest && !d.ICMPError {
		return untouched(b, xlat.ReasonDropCGNATNoMapping) // an echo reply: no inbound echo is let in
	}
	if d.TTL <= 1 {
		return untouched(b, xlat.ReasonPassTTL)
	}
	if udpZero(d, b) {
		return untouched(b, xlat.ReasonDropUDPZeroCsum)
	}
	k := Key{Addr: d.Key.Src, Port: d.Key.SPort, Proto: proto}
	tcp := tcpBits(d, b, true)
	o, ok := s.Out[k]
	fresh := false
	if !ok {
		switch {
		case d.ICMPError:
			return untouched(b, xlat.ReasonDropCGNATNoMapping)
		case pl == 0 && !syn(d, b):
			return untouched(b, xlat.ReasonDropCGNATNotSYN)
		case !c.Inside6.Contains(k.Addr):
			return untouched(b, xlat.ReasonDropNAT64Source)
		}
		var r xlat.Reason
		o, r = s.newMapping(c, k, pl, tcp)
		switch r {
		case xlat.ReasonNone:
			fresh = true
		case xlat.ReasonCGNATNoBlock:
			res := untouched(b, r)
			res.Key, res.Miss = d.Key, b[:min(len(b), xlat.MissSnap)]
			return res
		case xlat.ReasonCGNATRefused:
			return xlat.Result{Verdict: xlat.TX, Reason: r, Out: Refusal6(b), Key: d.Key}
		default:
			return untouched(b, r)
		}
	} else if o.Epoch != s.Epoch {
		o.Epoch = s.Epoch
		s.Out[k] = o
	}
	if !d.ICMPError {
		s.permit(c, o.Addr, o.Port, proto, dst, d.Key.DPort, k)
	}
	if tcp != 0 && !fresh {
		if off, ok := c.poolPort(o.Addr, o.Port); ok {
			s.note(Slot{pl, off}, tcp, syn(d, b))
		}
	}
	out, r := xlat.Xlat64(b, xlat.Entry{Proto: proto, Src: o.Addr, SPort: o.Port, Dst: dst, DPort: d.Key.DPort})
	if r != xlat.ReasonNone {
		return untouched(b, r)
	}
	return hit(out, d.Key, d.ICMPError)
}

// inbound64 is inbound for a NAT64 mapping's slot (cg_inbound64), past
// the checks both share.
func (s *State) inbound64(c *Config, d xlat.Parsed, b []byte, sl Slot, in In) xlat.Result {
	if udpZero(d, b) {
		return untouched(b, xlat.ReasonDropUDPZeroCsum) // IPv6 needs one (RFC 6146 3.4: may drop)
	}
	grow := 20 // an error's quote grows too
	if d.ICMPError {
		grow = 40
	}
	if int(binary.BigEndian.Uint16(b[ethLen+2:]))+grow > c.LinkMTU6() {
		if d.ICMPError || b[ethLen+6]&0x40 == 0 {
			return untouched(b, xlat.ReasonDropNAT64TooBig) // not fragmented here
		}
		return xlat.Result{Verdict: xlat.TX, Reason: xlat.ReasonNAT64TooBig, Out: answer4(b, outerDst(b), 4, uint16(c.LinkMTU6()-20)), Key: d.Key}
	}
	s.note(sl, tcpBits(d, b, false), false)
	proto := d.Key.Proto
	if proto == protoICMP {
		proto = protoICMPv6
	}
	e := xlat.Entry{Proto: proto, Src: xlat.Embed(c.Prefix(), d.Key.Src), SPort: d.Key.SPort, Dst: in.Addr, DPort: in.Port}
	out, r := xlat.Xlat46(b, e, c.Prefix())
	if r != xlat.ReasonNone {
		return untouched(b, r)
	}
	return hit(out, d.Key, d.ICMPError)
}

// Refusal6 is cg_refuse6's answer to a refused NAT64 first packet b:
// ICMPv6 destination unreachable, administratively prohibited (type 1
// code 1), from b's destination to its source, quoting b's IPv6 header
// and first 8 L4 bytes, back to b's sender's MAC.
func Refusal6(b []byte) []byte {
	out := make([]byte, ethLen+40+8+48)
	copy(out[0:6], b[6:12])
	copy(out[6:12], b[0:6])
	out[12], out[13] = 0x86, 0xdd
	h := out[ethLen:]
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], 8+48)
	h[6], h[7] = protoICMPv6, 64
	copy(h[8:24], b[ethLen+24:ethLen+40])
	copy(h[24:40], b[ethLen+8:ethLen+24])
	ic := out[ethLen+40:]
	ic[0], ic[1] = 1, 1
	copy(ic[8:], b[ethLen:ethLen+48])
	var ph [40]byte
	copy(ph[0:32], h[8:40])
	binary.BigEndian.PutUint32(ph[32:], 8+48)
	ph[39] = protoICMPv6
	sum := uint32(sum16(ph[:])) + uint32(sum16(ic))
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ic[2:], ^uint16(sum))
	return out
}
