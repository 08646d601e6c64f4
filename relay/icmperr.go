package relay

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/xdp"
)

// ICMP errors the datapath hands over (session/xlat/icmperr.go): an
// ICMPv6 error from a router beyond the relay goes to the edge of the
// flow it is about, whole, on the control channel; a carrier whose TTL
// runs out at the relay gets the time exceeded a router would send.

// errorFlow is the flow an ICMP error is about, from its key (the
// embedded packet's tuple reversed: from the remote to the site).
func errorFlow(k xlat.Key) session.Flow {
	return session.Flow{Proto: session.Proto(k.Proto), Site: netip.AddrPortFrom(k.Dst, k.DPort), Remote: netip.AddrPortFrom(k.Src, k.SPort)}
}

// relayICMPError sends an ICMPv6 error from a router beyond the relay to
// the edge whose flow it is about. Every refusal is counted.
func (c *agent) relayICMPError(k xlat.Key, m xdp.Miss) {
	if m.Len != len(m.Data) {
		c.m.Inc(mICMPErrTruncated)
		return
	}
	pkt := m.Data[14:]
	if len(pkt) < 40 || len(pkt) < 40+int(binary.BigEndian.Uint16(pkt[4:])) {
		c.m.Inc(mICMPErrMalformed)
		return
	}
	pkt = pkt[:40+int(binary.BigEndian.Uint16(pkt[4:]))]
	if len(pkt) > proto.MaxICMPErrorLen {
		c.m.Inc(mICMPErrTooLong)
		return
	}
	if netip.AddrFrom16([16]byte(pkt[24:40])) != k.Dst {
		c.m.Inc(mICMPErrMalformed) // not to the embedded packet's source
		return
	}
	if pkt[7] <= 1 {
		c.m.Inc(mICMPErrHopLimit)
		return
	}
	f := errorFlow(k)
	c.flows.mu.Lock()
	cr := c.flows.get(f)
	var ss interface{ ICMPError([]byte) error }
	c.flows.mu.Unlock()
	if cr != nil {
		if s := c.sessions.session(cr.site); s != nil {
			ss = s
		}
	}
	switch {
	case cr == nil:
		c.m.Inc(mICMPErrNotFlow)
		return
	case ss == nil:
		c.m.Inc(mICMPErrNoSession)
		return
	case !c.icmpLimit.Allow(cr.site, time.Now()):
		c.m.Inc(mICMPErrRateLimited)
		return
	}
	out := append([]byte(nil), pkt...)
	out[7]-- // the relay is a hop (the hop limit is outside the checksum)
	if err := ss.ICMPError(out); err != nil {
		c.m.Inc(mICMPErrSendFailed)
		return
	}
	c.m.Inc(mICMPErrRelayed)
}

// timeExceeded answers a carrier whose TTL ran out at the relay as a
// router would: ICMPv4 time exceeded in transit from the relay's carrier
// address. The edge shows it as a hop, 64:ff9b::<relay>.
func (c *agent) timeExceeded(dp *datapath, frame []byte) {
	ip := frame[14:]
	// The limit's "" is no site: the relay's own.
	dp.SendTimeExceeded(c.icmpLimit, func() []byte { return xlat.TimeExceeded4(dp.Cfg.CarrierAddr, ip) }, c.m, timeExceededCounters)
}

// ttlExpired reports whether frame is an IPv4 packet to the relay's
// carrier address whose TTL ran out here.
func ttlExpired(frame []byte, carrier netip.Addr) bool {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 || frame[14]>>4 != 4 {
		return false
	}
	ip := frame[14:]
	return ip[8] <= 1 && netip.AddrFrom4([4]byte(ip[16:20])) == carrier
}
