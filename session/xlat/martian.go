package xlat

import (
	"encoding/binary"
	"net/netip"
)

// Ingress filtering (BCP 38/84): addresses no packet unmap carries may
// have, each class counted under a reason of its own. The datapath's
// xdp/bpf/martian.h, check for check:
//   - martianSrc: the outer source's class, on every packet unmap takes
//     (each hit, and each miss before it goes to the agent);
//   - martianDst: destinations no wire carries, on a miss before the
//     address sets are consulted (the datapath's maps hold IPv4 as
//     ::ffff:a.b.c.d, so an IPv6 packet to ::ffff:<a site's IPv4> must
//     not get that far);
//   - foreignSrc, at the relay, on what goes to the agent: a source in a
//     site (prefix or public IPv4) or one of the relay's own addresses.

// linkLocal4 is IPv4's link-local prefix (RFC 3927).
var linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")

// MartianSrc is the reason the datapath drops a packet whose source is
// a, or ReasonNone: the classes that need no table (unspecified,
// loopback, multicast, link-local, IPv4 inside IPv6, reserved IPv4).
// Agents can refuse a flow's far end with it too.
func MartianSrc(a netip.Addr) Reason {
	if a.Is4() {
		b := a.As4()
		switch {
		case b[0] == 0:
			return ReasonDropMartianUnspecified
		case b[0] == 127:
			return ReasonDropMartianLoopback
		case b[0] == 169 && b[1] == 254:
			return ReasonDropMartianLinkLocal
		case b[0] >= 240:
			return ReasonDropMartianReserved
		case b[0] >= 224:
			return ReasonDropMartianMulticast
		}
		return ReasonNone
	}
	b := a.As16()
	switch {
	case b[0] == 0xff:
		return ReasonDropMartianMulticast
	case b[0] == 0xfe && b[1]&0xc0 == 0x80:
		return ReasonDropMartianLinkLocal
	case binary.BigEndian.Uint64(b[:8]) != 0:
		return ReasonNone
	}
	switch w2, w3 := binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:]); {
	case w2 == 0 && w3 == 0:
		return ReasonDropMartianUnspecified
	case w2 == 0 && w3 == 1:
		return ReasonDropMartianLoopback
	case w2 == 0 || w2 == 0xffff:
		return ReasonDropMartianMapped // ::ffff:0:0/96, or ::/96 (IPv4-compatible, deprecated)
	}
	return ReasonNone
}

// outerSrc is p's source as on the wire (an ICMP error's key is the
// packet it quotes).
func outerSrc(p *pkt) netip.Addr {
	if p.v4 {
		return netip.AddrFrom4([4]byte(p.b[ethLen+12 : ethLen+16]))
	}
	return netip.AddrFrom16([16]byte(p.b[ethLen+8 : ethLen+24]))
}

// martianSrc: the outer source's class, or this end's carrier address.
func martianSrc(cfg *Config, p *pkt) Reason {
	s := outerSrc(p)
	r := MartianSrc(s)
	if r == ReasonNone && p.v4 && cfg.CarrierAddr.IsValid() && !cfg.CarrierAddr.IsUnspecified() && s == cfg.CarrierAddr {
		return ReasonDropMartianOwn
	}
	return r
}

// martianDst: a key destination no wire may carry: IPv6 ::/96 and
// ::ffff:0:0/96, IPv4 0/8 and 127/8. (Multicast and link-local ones
// already passed to the stack in parse.)
func martianDst(p *pkt) Reason {
	if p.v4 {
		if b := p.key.Dst.As4(); b[0] == 0 || b[0] == 127 {
			return ReasonDropMartianDst
		}
		return ReasonNone
	}
	b := p.key.Dst.As16()
	if binary.BigEndian.Uint64(b[:8]) == 0 {
		if w2 := binary.BigEndian.Uint32(b[8:]); w2 == 0 || w2 == 0xffff {
			return ReasonDropMartianDst
		}
	}
	return ReasonNone
}

// foreignSrc: at the relay, before a packet goes to the agent, its
// source must be neither in a site nor one of the relay's own.
func foreignSrc(role Role, t Tables, p *pkt) Reason {
	if role != RoleRelayExt {
		return ReasonNone
	}
	s := outerSrc(p)
	switch {
	case t.InSite(s):
		return ReasonDropMartianSite
	case t.IsLocal(s):
		return ReasonDropMartianOwn
	}
	return ReasonNone
}
