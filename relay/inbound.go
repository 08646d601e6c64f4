package relay

import (
	"context"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// maxHeld bounds the packets held for one inbound flow while the edge
// decides on it and opens its carrier.
const maxHeld = 8

// inboundSetup bounds how long an inbound flow may take to be accepted
// and its carrier opened through the CGNAT before its packets are dropped.
const inboundSetup = 5 * time.Second

// inbound handles a packet to a site that has no flow yet: it offers the
// flow to the site's edge, holding the packet (and the next few of the
// flow) until the carrier is bound. Only UDP and protocols that ride a
// UDP carrier are offered for now; TCP needs the carrier handshake.
func (c *carriers) inbound(ctx context.Context, k xlat.Key, frame []byte) {
	f := session.Flow{Proto: session.Proto(k.Proto), Site: netip.AddrPortFrom(k.Dst, k.DPort), Remote: netip.AddrPortFrom(k.Src, k.SPort)}
	if f.Proto == session.TCP {
		c.count("inbound-tcp-unsupported")
		return
	}
	c.mu.Lock()
	if h, ok := c.held[f]; ok {
		if len(h) < maxHeld {
			c.held[f] = append(h, frame)
		} else {
			c.countLocked("inbound-held-overflow")
		}
		c.mu.Unlock()
		return
	}
	ss := c.owner(k.Dst)
	if ss == nil {
		c.countLocked("inbound-no-session")
		c.mu.Unlock()
		return
	}
	c.held[f] = [][]byte{frame}
	released := make(chan struct{})
	c.done[f] = released
	c.mu.Unlock()
	go c.offer(ctx, ss, f, released)
}

// offer asks the edge and, on accept, waits for the carrier to bind; the
// held packets go out when it does (release closes released).
func (c *carriers) offer(ctx context.Context, ss *control.Session, f session.Flow, released <-chan struct{}) {
	lease, err := c.ports.Grant(ss.Site(), publicAddr(ss), session.UDP)
	if err != nil {
		c.drop(f, "inbound-no-port")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, inboundSetup)
	defer cancel()
	r, err := ss.Offer(ctx, &proto.FlowOffer{Flow: f, CarrierProto: session.UDP, Relay: lease.RelayAddr(),
		LifetimeSec: uint32(c.udpTimeout / time.Second)})
	if err != nil {
		_ = c.ports.Release(lease)
		c.drop(f, "inbound-refused")
		c.log.Debug("inbound flow refused", "flow", f, "err", err)
		return
	}
	c.mu.Lock()
	c.add(f, &carrier{site: ss.Site(), lease: lease, edgePort: r.EdgePort, token: r.Token, gen: ss.ID(), inbound: true,
		lifetime: c.udpTimeout})
	early := c.takeEarlyLocked(leaseKey{lease.Key, lease.Port})
	c.mu.Unlock()
	// The edge sends its opener as it replies: it may have come first.
	for _, p := range early {
		c.carrierPacket(p.key, p.frame, true)
	}
	// The edge's opener binds the carrier (misses → bind → release). If it
	// never comes, the held packets go.
	select {
	case <-ctx.Done():
		c.drop(f, "inbound-not-opened")
	case <-released:
	}
}

// drop forgets an inbound flow's held packets (if still held), counting
// them.
func (c *carriers) drop(f session.Flow, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range c.held[f] {
		c.countLocked(why)
	}
	delete(c.held, f)
	delete(c.done, f)
}

// release sends an inbound flow's held packets through its new carrier.
func (c *carriers) release(dp *datapath, f session.Flow, carrier session.Carrier) {
	c.mu.Lock()
	held := c.held[f]
	delete(c.held, f)
	if ch, ok := c.done[f]; ok {
		close(ch)
		delete(c.done, f)
	}
	c.mu.Unlock()
	dp.send(f, carrier, held, func(name string) { c.count(name) })
}

// owner is the live session of the site an address belongs to; c.mu held.
func (c *carriers) owner(a netip.Addr) *control.Session {
	for site, p := range c.grants {
		for _, pfx := range p {
			if pfx.Contains(a) {
				return c.live[site]
			}
		}
	}
	return nil
}
