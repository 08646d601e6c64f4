package edge

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/ratelimit"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// The relay sends the ICMPv6 errors that routers beyond it sent about
// the site's flows (a hop of traceroute6, a Packet Too Big) whole, on the
// control channel; the edge gives them to the LAN host they are for, as
// a router would, after checking they are about one of its flows. Every
// refusal is counted.

var _ control.ICMPErrorHandler = (*agent)(nil)

// newICMPLimit bounds the time exceeded the edge sends, as a router's
// stack does its own ICMP errors.
func newICMPLimit() *ratelimit.Limiter { return &ratelimit.Limiter{Rate: 100, Burst: 50} }

func isIPv6(frame []byte) bool {
	return len(frame) >= 14+40 && binary.BigEndian.Uint16(frame[12:]) == 0x86dd && frame[14]>>4 == 6
}

// timeExceeded answers an IPv6 packet from the LAN whose hop limit ran out
// at the edge as a router would, from the edge's LAN address: the edge's
// stack has no IPv6 route out, and would answer no route instead.
func (a *agent) timeExceeded(dp *datapath, ip []byte) {
	g, _ := a.Grant()
	if g == nil {
		a.count("ttl-exceeded-no-prefix")
		return
	}
	if !a.icmpLimit.Allow("", time.Now()) {
		a.count("ttl-exceeded-rate-limited")
		return
	}
	out := xlat.TimeExceeded6(lanPrefix(g.Prefix).Addr().Next(), ip)
	if out == nil {
		a.count("ttl-exceeded-malformed")
		return
	}
	if err := dp.inj.Packet(out); err != nil {
		a.count("ttl-exceeded-send-failed")
		return
	}
	a.count("ttl-exceeded-sent")
}

// ICMPError injects a relayed ICMPv6 error toward its LAN host.
func (a *agent) ICMPError(m *proto.ICMPError) {
	pkt := m.Packet // an IPv6 ICMPv6 error: proto checked its shape
	frame := append([]byte{12: 0x86, 13: 0xdd}, pkt...)
	k, ok := xlat.ErrorKey(frame)
	if !ok || !k.Src.Is6() {
		a.count("icmp-err-unusable")
		return
	}
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	if g, _ := a.Grant(); g == nil || !g.Prefix.Contains(dst) || dst != k.Dst {
		a.count("icmp-err-not-prefix") // not for the site, or not for the packet's sender
		return
	}
	f := session.Flow{Proto: session.Proto(k.Proto), Site: netip.AddrPortFrom(k.Dst, k.DPort), Remote: netip.AddrPortFrom(k.Src, k.SPort)}
	if _, ok := a.flows.Get(f); !ok {
		a.count("icmp-err-not-flow")
		return
	}
	if pkt[7] <= 1 {
		a.count("icmp-err-hop-limit")
		return
	}
	if a.dp == nil {
		a.count("icmp-err-no-datapath")
		return
	}
	out := append([]byte(nil), pkt...)
	out[7]-- // the edge is a hop (the hop limit is outside the checksum)
	if err := a.dp.inj.Packet(out); err != nil {
		a.count("icmp-err-inject-failed")
		a.log.Debug("ICMP error not injected", "flow", f, "err", err)
		return
	}
	a.count("icmp-err-injected")
}
