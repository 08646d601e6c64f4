package relay

import (
	"encoding/binary"
	"net/netip"
	"sync"
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

// Rates: per site for relayed errors (traceroute sends 3 probes a hop, a
// few hops at once), and for the relay's own time exceeded.
const (
	icmpErrRate  = 100 // a second
	icmpErrBurst = 50
)

// bucket is a token bucket: rate tokens a second, at most burst.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// limiter keeps a bucket per name.
type limiter struct {
	mu sync.Mutex
	by map[string]*bucket
}

func (l *limiter) allow(name string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[string]*bucket{}
	}
	b := l.by[name]
	if b == nil {
		b = &bucket{}
		l.by[name] = b
	}
	return b.take(now, icmpErrRate, icmpErrBurst)
}

// errorFlow is the flow an ICMP error is about, from its key (the
// embedded packet's tuple reversed: from the remote to the site).
func errorFlow(k xlat.Key) session.Flow {
	return session.Flow{Proto: session.Proto(k.Proto), Site: netip.AddrPortFrom(k.Dst, k.DPort), Remote: netip.AddrPortFrom(k.Src, k.SPort)}
}

// relayICMPError sends an ICMPv6 error from a router beyond the relay to
// the edge whose flow it is about. Every refusal is counted.
func (c *carriers) relayICMPError(k xlat.Key, m xdp.Miss) {
	if m.Len != len(m.Data) {
		c.count("icmp-err-truncated")
		return
	}
	pkt := m.Data[14:]
	if len(pkt) < 40 || len(pkt) < 40+int(binary.BigEndian.Uint16(pkt[4:])) {
		c.count("icmp-err-malformed")
		return
	}
	pkt = pkt[:40+int(binary.BigEndian.Uint16(pkt[4:]))]
	if len(pkt) > proto.MaxICMPErrorLen {
		c.count("icmp-err-too-long")
		return
	}
	if netip.AddrFrom16([16]byte(pkt[24:40])) != k.Dst || pkt[7] <= 1 {
		c.count("icmp-err-malformed") // not to the embedded packet's source, or no hop left
		return
	}
	f := errorFlow(k)
	c.mu.Lock()
	cr := c.flows[f]
	var ss interface{ ICMPError([]byte) error }
	if cr != nil {
		if s := c.live[cr.site]; s != nil {
			ss = s
		}
	}
	c.mu.Unlock()
	switch {
	case cr == nil:
		c.count("icmp-err-not-flow")
		return
	case ss == nil:
		c.count("icmp-err-no-session")
		return
	case !c.icmpLimit.allow(cr.site, time.Now()):
		c.count("icmp-err-rate-limited")
		return
	}
	out := append([]byte(nil), pkt...)
	out[7]-- // the relay is a hop (the hop limit is outside the checksum)
	if err := ss.ICMPError(out); err != nil {
		c.count("icmp-err-send-failed")
		return
	}
	c.count("icmp-err-relayed")
}

// ttlMaxQuote is what a time exceeded quotes of the packet: its IPv4
// header and first 8 bytes (RFC 792), which carry the carrier's ports.
const ttlMaxQuote = 20 + 8

// timeExceeded answers a carrier whose TTL ran out at the relay as a
// router would: ICMPv4 time exceeded in transit from the relay's carrier
// address. The edge shows it as a hop, 64:ff9b::<relay>.
func (c *carriers) timeExceeded(dp *datapath, m xdp.Miss) {
	ip := m.Data[14:]
	if !c.icmpLimit.allow("", time.Now()) { // "" is no site: the relay's own
		c.count("ttl-exceeded-rate-limited")
		return
	}
	out := timeExceeded4(dp.cfg.CarrierAddr, ip)
	if out == nil {
		c.count("ttl-exceeded-malformed")
		return
	}
	if err := dp.inj.Packet(out); err != nil {
		c.count("ttl-exceeded-send-failed")
		return
	}
	c.count("ttl-exceeded-sent")
}

// timeExceeded4 builds an ICMPv4 time exceeded in transit from `from`
// about IPv4 packet ip (nil if ip is not one).
func timeExceeded4(from netip.Addr, ip []byte) []byte {
	if len(ip) < 20 || ip[0] != 0x45 {
		return nil
	}
	q := ip[:min(len(ip), ttlMaxQuote)]
	b := make([]byte, 20+8+len(q))
	b[0], b[8], b[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	f := from.As4()
	copy(b[12:16], f[:])
	copy(b[16:20], ip[12:16]) // back to the packet's source
	binary.BigEndian.PutUint16(b[10:], csum(b[:20]))
	b[20] = 11 // time exceeded, code 0: in transit
	copy(b[28:], q)
	binary.BigEndian.PutUint16(b[22:], csum(b[20:]))
	return b
}

// csum is the Internet checksum of b.
func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
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
