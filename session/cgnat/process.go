package cgnat

import (
	"encoding/binary"
	"net/netip"

	"github.com/unmap-dev/unmap/session/xlat"
)

const (
	ethLen    = 14
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17

	protoICMPv6 = 58
)

func untouched(b []byte, r xlat.Reason) xlat.Result {
	return xlat.Result{Verdict: r.Verdict(), Reason: r, Out: b}
}

func hit(out []byte, k xlat.Key, icmpErr bool) xlat.Result {
	return xlat.Result{Verdict: xlat.Pass, Out: out, Hit: true, Key: k, ICMPError: icmpErr}
}

// outerSrc and outerDst are an IPv4 frame's header addresses.
func outerSrc(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[ethLen+12 : ethLen+16])) }
func outerDst(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[ethLen+16 : ethLen+20])) }

// tcpBits is the state a TCP segment brings (out: from the subscriber).
func tcpBits(d xlat.Parsed, b []byte, out bool) uint8 {
	if d.Key.Proto != protoTCP || d.ICMPError {
		return 0
	}
	f, t := b[d.L4+13], uint8(0)
	if f&0x02 != 0 {
		t |= pick(out, TCPSynOut, TCPSynIn)
	}
	if f&0x01 != 0 {
		t |= pick(out, TCPFinOut, TCPFinIn)
	}
	if f&0x04 != 0 {
		t |= TCPRst
	}
	return t
}

func pick(c bool, a, b uint8) uint8 {
	if c {
		return a
	}
	return b
}

// syn: a SYN without ACK, the one segment that makes a TCP mapping.
func syn(d xlat.Parsed, b []byte) bool { return b[d.L4+13]&0x12 == 0x02 }

// note records a TCP segment's state bits on an inbound slot (cg_note).
func (s *State) note(sl Slot, tcp uint8, restart bool) {
	in := s.In[sl]
	if restart {
		in.TCP = tcp
	} else {
		in.TCP |= tcp
	}
	s.In[sl] = in
}

func (s *State) perm(c *Config, pub netip.Addr, pport uint16, proto uint8, raddr netip.Addr, rport uint16) Perm {
	if c.Filter != APDF {
		rport = 0
	}
	return Perm{Pub: pub, PPort: pport, Proto: proto, RAddr: raddr, RPort: rport}
}

// InsideOf is a mapping's inside end as a permission records it: the
// subscriber's address (an IPv6 subscriber's /64: the datapath's slot
// holds its index, the interface ID apart) and port.
func InsideOf(addr netip.Addr, port uint16) netip.AddrPort {
	if addr.Is6() {
		addr = netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return netip.AddrPortFrom(addr, port)
}

// permitted: may raddr:rport reach pub:pport, whose inbound slot is in?
// Only through a permission its inside end made: one an earlier mapping
// of the port left does not pass.
func (s *State) permitted(c *Config, pub netip.Addr, pport uint16, proto uint8, raddr netip.Addr, rport uint16, in In) bool {
	if c.Filter == EIF {
		return true
	}
	got, ok := s.Perms[s.perm(c, pub, pport, proto, raddr, rport)]
	return ok && got == InsideOf(in.Addr, in.Port)
}

func (s *State) permit(c *Config, pub netip.Addr, pport uint16, proto uint8, raddr netip.Addr, rport uint16, k Key) {
	if c.Filter != EIF {
		s.Perms[s.perm(c, pub, pport, proto, raddr, rport)] = InsideOf(k.Addr, k.Port)
	}
}

// Sub runs one packet through the subscriber interface (relay_sub).
// Forwarding is off (translated packets pass), as in the tests.
func Sub(c *Config, s *State, b []byte) xlat.Result {
	d, r := xlat.Parse(b)
	if r != xlat.ReasonNone {
		return untouched(b, subUnparsed(c, b, r))
	}
	if !c.Enabled() {
		return untouched(b, xlat.ReasonPassNotOurs)
	}
	if !d.V4 {
		return sub64(c, s, d, b)
	}
	dst := d.Key.Dst
	if dst == c.Gateway || c.inside(dst) {
		return untouched(b, xlat.ReasonPassLocal)
	}
	if m := xlat.MartianDst(d); m != xlat.ReasonNone {
		return untouched(b, m)
	}
	if !c.inside(outerSrc(b)) {
		return untouched(b, xlat.ReasonDropCGNATSource)
	}
	pl := plane(d.Key.Proto)
	if pl < 0 {
		return untouched(b, xlat.ReasonDropCGNATProto)
	}
	hp, hairpin := 0, false
	if c.inPool(dst) {
		// Hairpin: TCP and UDP to another mapping; the rest to a pool
		// address is for the relay itself, untranslated.
		if d.ICMPError {
			return untouched(b, xlat.ReasonDropCGNATProto)
		}
		if pl < 2 {
			hp, hairpin = c.poolPort(dst, d.Key.DPort)
		}
		if !hairpin {
			return untouched(b, xlat.ReasonPassLocal)
		}
	}
	if pl == 2 && !d.EchoRequest && !d.ICMPError {
		return untouched(b, xlat.ReasonDropCGNATNoMapping) // an echo reply: no inbound echo is let in
	}
	if d.TTL <= 1 {
		return untouched(b, xlat.ReasonPassTTL)
	}
	k := Key{Addr: d.Key.Src, Port: d.Key.SPort, Proto: d.Key.Proto}
	tcp := tcpBits(d, b, true)
	o, ok := s.Out[k]
	fresh := false
	if !ok {
		switch {
		case d.ICMPError:
			return untouched(b, xlat.ReasonDropCGNATNoMapping)
		case pl == 0 && !syn(d, b):
			return untouched(b, xlat.ReasonDropCGNATNotSYN)
		}
		o, r = s.newMapping(c, k, pl, tcp)
		switch r {
		case xlat.ReasonNone:
			fresh = true
		case xlat.ReasonCGNATNoBlock:
			res := untouched(b, r)
			res.Key, res.Miss = d.Key, b[:min(len(b), xlat.MissSnap)]
			return res
		case xlat.ReasonCGNATRefused:
			return xlat.Result{Verdict: xlat.TX, Reason: r, Out: Refusal(c, b), Key: d.Key}
		default:
			return untouched(b, r)
		}
	} else if o.Epoch != s.Epoch {
		o.Epoch = s.Epoch
		s.Out[k] = o
	}
	if !d.ICMPError {
		s.permit(c, o.Addr, o.Port, d.Key.Proto, dst, d.Key.DPort, k)
	}
	if tcp != 0 && !fresh {
		if off, ok := c.poolPort(o.Addr, o.Port); ok {
			s.note(Slot{pl, off}, tcp, syn(d, b))
		}
	}
	e := xlat.Entry{Src: o.Addr, SPort: o.Port, Dst: dst, DPort: d.Key.DPort}
	if hairpin {
		sl := Slot{pl, hp}
		in, ok := s.In[sl]
		if !ok {
			return untouched(b, xlat.ReasonDropCGNATNoMapping)
		}
		if in.Addr.Is6() {
			return untouched(b, xlat.ReasonDropNAT64Hairpin) // no 4 -> 6 between subscribers
		}
		if !in.Explicit && !s.permitted(c, dst, d.Key.DPort, d.Key.Proto, o.Addr, o.Port, in) {
			return untouched(b, xlat.ReasonDropCGNATFiltered)
		}
		s.note(sl, tcpBits(d, b, false), false)
		e.Dst, e.DPort = in.Addr, in.Port
	}
	out, r := xlat.NAPT44(b, e, e.Src)
	if r != xlat.ReasonNone {
		return untouched(b, r)
	}
	return hit(out, d.Key, d.ICMPError)
}

// subUnparsed: IPv4 the CGNAT cannot translate is dropped (the stack would
// forward it with an inside source), unless it is for the relay or another
// subscriber's inside address.
func subUnparsed(c *Config, b []byte, r xlat.Reason) xlat.Reason {
	if !c.Enabled() || r != xlat.ReasonPassFragment && r != xlat.ReasonPassIPOptions && r != xlat.ReasonPassICMPOther && r != xlat.ReasonPassIPv6Ext {
		return r
	}
	if len(b) >= ethLen && binary.BigEndian.Uint16(b[12:]) == 0x86dd {
		return c.unparsed64(b, r)
	}
	if len(b) < ethLen+20 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
		return r
	}
	if dst := outerDst(b); dst == c.Gateway || c.inside(dst) {
		return r
	}
	switch r {
	case xlat.ReasonPassFragment:
		return xlat.ReasonDropCGNATFragment
	case xlat.ReasonPassIPOptions:
		return xlat.ReasonDropCGNATOptions
	}
	return xlat.ReasonDropCGNATProto
}

// newMapping takes a port from the subscriber's blocks in order (cg_new).
func (s *State) newMapping(c *Config, k Key, pl int, tcp uint8) (Out, xlat.Reason) {
	sub := c.SubOf(k.Addr)
	u := s.Subs[sub]
	if u == nil {
		return Out{}, xlat.ReasonCGNATNoBlock
	}
	for j, id := range u.Blocks {
		if j >= SubBlocks {
			break
		}
		b := s.Blocks[id]
		if b == nil {
			continue
		}
		pos, ok := b.take(c, pl)
		if !ok {
			continue
		}
		b.Used[pl]++
		port := b.Base + uint16(pos)
		off, ok := c.poolPort(b.Addr, port)
		if !ok {
			b.give(pl, pos)
			return Out{}, xlat.ReasonDropBadEntry // a block granted outside the pool
		}
		if b.Used[pl] == c.WarnAt() {
			s.Events = append(s.Events, Event{Sub: sub, Block: id, Used: b.Used[pl], Plane: pl})
		}
		s.In[Slot{pl, off}] = In{Addr: k.Addr, Port: k.Port, TCP: tcp}
		o := Out{Addr: b.Addr, Port: port, Epoch: s.Epoch}
		s.Out[k] = o
		return o, xlat.ReasonNone
	}
	if u.Spent {
		return Out{}, xlat.ReasonCGNATRefused
	}
	return Out{}, xlat.ReasonCGNATNoBlock
}

// Refusal is the answer to a refused first packet b: ICMP destination
// unreachable, communication administratively prohibited (type 3 code
// 13), from the gateway (or b's destination) to b's source, quoting b's
// IPv4 header and first 8 L4 bytes, back to b's sender's MAC.
func Refusal(c *Config, b []byte) []byte {
	from := c.Gateway
	if !from.IsValid() {
		from = outerDst(b)
	}
	return answer4(b, from, 13, 0)
}

// answer4 is an ICMP destination unreachable of code code (bytes 6-7:
// mtu) from from to b's source, quoting b's IPv4 header and first 8 L4
// bytes, back to b's sender's MAC: the refusal (13), NAT64's
// fragmentation needed (4, cg_too_big).
func answer4(b []byte, from netip.Addr, code uint8, mtu uint16) []byte {
	out := make([]byte, ethLen+20+8+28)
	copy(out[0:6], b[6:12])
	copy(out[6:12], b[0:6])
	out[12], out[13] = 0x08, 0x00
	ic := out[ethLen+20:]
	ic[0], ic[1] = 3, code
	binary.BigEndian.PutUint16(ic[6:], mtu)
	copy(ic[8:], b[ethLen:ethLen+28])
	binary.BigEndian.PutUint16(ic[2:], ^sum16(ic))
	h := out[ethLen:]
	h[0], h[1] = 0x45, 0
	binary.BigEndian.PutUint16(h[2:], 20+8+28)
	h[6], h[8], h[9] = 0x40, 64, protoICMP // DF, as every header the datapath writes
	f, t := from.As4(), outerSrc(b).As4()
	copy(h[12:16], f[:])
	copy(h[16:20], t[:])
	binary.BigEndian.PutUint16(h[10:], ^sum16(h[:20]))
	return out
}

func sum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// Ext runs one packet through the relay's Internet side (relay_ext): to a
// pool address and block port it is the CGNAT's, anything else the
// carriers' (xlat.Process with xc and t).
func Ext(c *Config, s *State, xc *xlat.Config, t xlat.Tables, b []byte) xlat.Result {
	d, r := xlat.Parse(b)
	if r != xlat.ReasonNone {
		if r == xlat.ReasonPassFragment && c.Enabled() && len(b) >= ethLen+20 &&
			binary.BigEndian.Uint16(b[12:]) == 0x0800 && c.inPool(outerDst(b)) && outerDst(b) != xc.CarrierAddr {
			return untouched(b, xlat.ReasonDropCGNATFragment)
		}
		return xlat.Process(xlat.RoleRelayExt, xc, t, nil, b)
	}
	if c.Enabled() && d.V4 && plane(d.Key.Proto) >= 0 {
		if off, ok := c.poolPort(d.Key.Dst, d.Key.DPort); ok {
			return s.inbound(c, xc, d, b, Slot{plane(d.Key.Proto), off})
		}
	}
	return xlat.Process(xlat.RoleRelayExt, xc, t, nil, b)
}

// inbound: Internet -> subscriber (cg_inbound).
func (s *State) inbound(c *Config, xc *xlat.Config, d xlat.Parsed, b []byte, sl Slot) xlat.Result {
	in, ok := s.In[sl]
	if !ok {
		return untouched(b, xlat.ReasonDropCGNATNoMapping)
	}
	if m := xlat.MartianOuterSrc(xc, b, d); m != xlat.ReasonNone {
		return untouched(b, m)
	}
	if !in.Explicit && !s.permitted(c, d.Key.Dst, d.Key.DPort, d.Key.Proto, d.Key.Src, d.Key.SPort, in) {
		return untouched(b, xlat.ReasonDropCGNATFiltered)
	}
	if d.TTL <= 1 {
		return untouched(b, xlat.ReasonPassTTL)
	}
	if in.Addr.Is6() {
		return s.inbound64(c, d, b, sl, in)
	}
	s.note(sl, tcpBits(d, b, false), false)
	e := xlat.Entry{Src: d.Key.Src, SPort: d.Key.SPort, Dst: in.Addr, DPort: in.Port}
	out, r := xlat.NAPT44(b, e, outerSrc(b))
	if r != xlat.ReasonNone {
		return untouched(b, r)
	}
	return hit(out, d.Key, d.ICMPError)
}
