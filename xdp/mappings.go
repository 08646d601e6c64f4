package xdp

import (
	"fmt"
	"net/netip"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// actions picks how a flow rides its carrier. An IPv6 flow rides
// natively (TCP in TCP, UDP in UDP, ICMPv6 echo in ICMP echo) or, for any
// other payload, after an 8-byte UDP header. An IPv4 flow (the site's
// public IPv4) rides natively only: both ends rewrite addresses and ports
// (NAPT), and the packet keeps its size.
func actions(f session.Flow, c session.Carrier) (toCarrier, fromCarrier xlat.Action, err error) {
	if f.Site.Addr().Is4() != f.Remote.Addr().Is4() {
		return 0, 0, fmt.Errorf("flow %v mixes address families", f)
	}
	if f.Site.Addr().Is4() {
		if c.Proto != f.Proto || f.Proto != session.TCP && f.Proto != session.UDP && f.Proto != session.ICMP {
			return 0, 0, fmt.Errorf("IPv4 flow %v cannot ride a %v carrier", f, c.Proto)
		}
		return xlat.ActNAPT44, xlat.ActNAPT44, nil
	}
	native := (f.Proto == session.TCP || f.Proto == session.UDP) && c.Proto == f.Proto ||
		f.Proto == session.ICMPv6 && c.Proto == session.ICMP
	switch {
	case native:
		return xlat.ActXlat64, xlat.ActXlat46, nil
	case c.Proto == session.UDP && f.Proto != session.TCP && f.Proto != session.UDP:
		return xlat.ActWrap64, xlat.ActUnwrap46, nil
	}
	return 0, 0, fmt.Errorf("flow %v cannot ride a %v carrier", f, c.Proto)
}

// flowKey is the key of a flow packet from src to dst.
func flowKey(p session.Proto, src, dst netip.AddrPort) xlat.Key {
	return xlat.Key{Proto: uint8(p), Src: src.Addr(), Dst: dst.Addr(), SPort: src.Port(), DPort: dst.Port()}
}

// to is the entry that makes a packet leave as proto from src to dst.
func to(a xlat.Action, p session.Proto, src, dst netip.AddrPort) xlat.Entry {
	return xlat.Entry{Action: a, Proto: uint8(p), Src: src.Addr(), Dst: dst.Addr(), SPort: src.Port(), DPort: dst.Port()}
}

// EdgePair is the edge's two entries for a flow on its carrier: the site's
// packets (LAN side) become carrier packets from c.Edge to c.Relay, and
// carrier packets back (WAN side) become the flow's packets to the site.
func EdgePair(f session.Flow, c session.Carrier) (out, back Mapping, err error) {
	c = echoCarrier(c)
	toC, fromC, err := actions(f, c)
	if err != nil {
		return out, back, err
	}
	out = Mapping{flowKey(f.Proto, f.Site, f.Remote), to(toC, carrierNext(toC, c), c.Edge, c.Relay)}
	back = Mapping{flowKey(c.Proto, c.Relay, c.Edge), to(fromC, f.Proto, f.Remote, f.Site)}
	return out, back, nil
}

// RelayPair is the relay's two entries: carrier packets from the CGNAT's
// public side (c.Public, known once bound) become the flow's packets to
// the remote, and the remote's packets become carrier packets to c.Public.
func RelayPair(f session.Flow, c session.Carrier) (out, back Mapping, err error) {
	c = echoCarrier(c)
	toC, fromC, err := actions(f, c)
	if err != nil {
		return out, back, err
	}
	if !c.Public.IsValid() {
		return out, back, fmt.Errorf("carrier %v is not bound yet", c)
	}
	out = Mapping{flowKey(c.Proto, c.Public, c.Relay), to(fromC, f.Proto, f.Site, f.Remote)}
	back = Mapping{flowKey(f.Proto, f.Remote, f.Site), to(toC, carrierNext(toC, c), c.Relay, c.Public)}
	return out, back, nil
}

// EdgeFlow is EdgePair's inverse: the flow (as the LAN host sends it)
// and carrier whose out mapping m is, if EdgePair makes m for them. The
// carrier's public side is not in the entries: it is left zero.
func EdgeFlow(m Mapping) (session.Flow, session.Carrier, bool) {
	f := session.Flow{Proto: session.Proto(m.Key.Proto),
		Site: netip.AddrPortFrom(m.Key.Src, m.Key.SPort), Remote: netip.AddrPortFrom(m.Key.Dst, m.Key.DPort)}
	cp := session.Proto(m.Entry.Proto)
	if m.Entry.Action == xlat.ActWrap64 {
		cp = session.UDP // a wrap always emits UDP; its entry leaves the proto out
	}
	c := session.Carrier{Proto: cp,
		Edge: netip.AddrPortFrom(m.Entry.Src, m.Entry.SPort), Relay: netip.AddrPortFrom(m.Entry.Dst, m.Entry.DPort)}
	out, _, err := EdgePair(f, c)
	return f, c, err == nil && out == m
}

// RelayFlow is RelayPair's inverse: the flow and carrier whose out
// mapping (a carrier's way in) m is, if RelayPair makes m for them. An
// ICMP echo carrier's relay port is not in the entries: it is left zero.
func RelayFlow(m Mapping) (session.Flow, session.Carrier, bool) {
	f := session.Flow{Proto: session.Proto(m.Entry.Proto),
		Site: netip.AddrPortFrom(m.Entry.Src, m.Entry.SPort), Remote: netip.AddrPortFrom(m.Entry.Dst, m.Entry.DPort)}
	c := session.Carrier{Proto: session.Proto(m.Key.Proto),
		Relay: netip.AddrPortFrom(m.Key.Dst, m.Key.DPort), Public: netip.AddrPortFrom(m.Key.Src, m.Key.SPort)}
	out, _, err := RelayPair(f, c)
	return f, c, err == nil && out == m
}

// carrierNext is Entry.Proto toward the carrier: the carrier protocol,
// or 0 for a UDP wrap (which always emits UDP).
func carrierNext(a xlat.Action, c session.Carrier) session.Proto {
	if a == xlat.ActWrap64 {
		return 0
	}
	return c.Proto
}

// echoCarrier drops the relay port of an ICMP echo carrier: an echo
// carries one identifier (E at the edge, C past the CGNAT), which the
// datapath reads as the source port of a request and the destination port
// of a reply; the relay's side has none.
func echoCarrier(c session.Carrier) session.Carrier {
	if c.Proto == session.ICMP {
		c.Relay = netip.AddrPortFrom(c.Relay.Addr(), 0)
	}
	return c
}

// Pair is a flow's two mappings as tables of the reference model, so an
// agent translates the packets it held with exactly the entries it has
// just installed.
type Pair [2]Mapping

func (p Pair) Lookup(k xlat.Key) (xlat.Entry, bool) {
	for _, m := range p {
		if m.Key == k {
			return m.Entry, true
		}
	}
	return xlat.Entry{}, false
}

func (Pair) IsLocal(netip.Addr) bool { return false }
func (Pair) InSite(netip.Addr) bool  { return false }
