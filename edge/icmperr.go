package edge

import (
	"encoding/binary"
	"net/netip"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// The relay sends the ICMPv6 errors that routers beyond it sent about
// the site's flows (a hop of traceroute6, a Packet Too Big) whole, on the
// control channel; the edge gives them to the LAN host they are for, as
// a router would, after checking they are about one of its flows. Every
// refusal is counted.

var _ control.ICMPErrorHandler = (*agent)(nil)

func isIPv6(frame []byte) bool {
	return len(frame) >= 14+40 && binary.BigEndian.Uint16(frame[12:]) == 0x86dd && frame[14]>>4 == 6
}

// timeExceeded answers an IPv6 packet from the LAN whose hop limit ran out
// at the edge as a router would, from the edge's LAN address: the edge's
// stack has no IPv6 route out, and would answer no route instead.
func (a *agent) timeExceeded(dp *datapath, ip []byte) {
	g, _ := a.Grant()
	if g == nil {
		a.m.Inc(mTTLExceededNoPrefix)
		return
	}
	from := lanPrefix(g.Prefix).Addr().Next()
	dp.SendTimeExceeded(a.icmpLimit, func() []byte { return xlat.TimeExceeded6(from, ip) }, a.m, timeExceededCounters)
}

// ICMPError injects a relayed ICMPv6 error toward its LAN host.
func (a *agent) ICMPError(m *proto.ICMPError) {
	pkt := m.Packet // an IPv6 ICMPv6 error: proto checked its shape
	frame := append([]byte{12: 0x86, 13: 0xdd}, pkt...)
	k, ok := xlat.ErrorKey(frame)
	if !ok || !k.Src.Is6() {
		a.m.Inc(mICMPErrUnusable)
		return
	}
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	if g, _ := a.Grant(); g == nil || !g.Prefix.Contains(dst) || dst != k.Dst {
		a.m.Inc(mICMPErrNotPrefix) // not for the site, or not for the packet's sender
		return
	}
	f := session.Flow{Proto: session.Proto(k.Proto), Site: netip.AddrPortFrom(k.Dst, k.DPort), Remote: netip.AddrPortFrom(k.Src, k.SPort)}
	if _, ok := a.flows.Get(f); !ok {
		a.m.Inc(mICMPErrNotFlow)
		return
	}
	if pkt[7] <= 1 {
		a.m.Inc(mICMPErrHopLimit)
		return
	}
	if a.dp == nil {
		a.m.Inc(mICMPErrNoDatapath)
		return
	}
	out := append([]byte(nil), pkt...)
	out[7]-- // the edge is a hop (the hop limit is outside the checksum)
	if err := a.dp.Inj.Packet(out); err != nil {
		a.m.Inc(mICMPErrInjectFailed)
		a.log.Debug("ICMP error not injected", "flow", f, "err", err)
		return
	}
	a.m.Inc(mICMPErrInjected)
}
