package relay

import (
	"context"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/xdp"
)

// The edge's table is authoritative: it expires its flows and tells the
// relay. The relay expires on its own only what no edge will ever close,
// such as the flows of an edge that went away for good, a carrier that
// never bound, or an inbound offer whose opener never came, so that its
// ports come back. It waits the flow's timeout (the longer of the relay's
// and the lifetime the edge asked for) plus a grace for the edge to say so
// first.
const (
	expireEvery = 20 * time.Second
	expireGrace = time.Minute
)

// activity is the number of packets the datapath translated for a flow,
// both directions; ok is false when it has no entries.
type activity func(f session.Flow, c session.Carrier) (packets uint64, closed, ok bool)

// datapathActivity reads a flow's counters from its two entries.
func datapathActivity(dp *datapath) activity {
	return func(f session.Flow, c session.Carrier) (uint64, bool, bool) {
		out, back, err := xdp.RelayPair(f, c)
		if err != nil {
			return 0, false, false
		}
		return dp.d.PairActivity(out, back)
	}
}

// idleLimit is how long flow f may stay idle at the relay.
func (c *carriers) idleLimit(f session.Flow, k *carrier) time.Duration {
	state := flows.StateOpen
	switch {
	case !k.public.IsValid():
		// Never bound: its first packet is long overdue.
		state = flows.StateOpening
	case k.closed:
		state = flows.StateTransitory // its TCP connection ended
	}
	d := c.timeouts.For(f.Proto, state)
	if state == flows.StateOpen {
		d = max(d, k.lifetime)
	}
	return d + expireGrace
}

// expire sweeps idle flows every expireEvery until ctx ends.
func (c *carriers) expire(ctx context.Context) {
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweep()
		}
	}
}

// sweep marks active the flows whose counters moved and removes those
// idle past their limit, telling their edge if it is connected. The
// counters are read without the lock: a flow removed meanwhile is skipped.
func (c *carriers) sweep() {
	type probe struct {
		f session.Flow
		c session.Carrier
	}
	var probes []probe
	c.mu.Lock()
	if c.activity != nil {
		for f, k := range c.flows {
			if k.public.IsValid() {
				probes = append(probes, probe{f, k.carrier()})
			}
		}
	}
	c.mu.Unlock()
	type seen struct {
		packets uint64
		closed  bool
	}
	counts := make(map[session.Flow]seen, len(probes))
	for _, p := range probes {
		if n, closed, ok := c.activity(p.f, p.c); ok {
			counts[p.f] = seen{n, closed}
		}
	}

	now := c.now()
	c.mu.Lock()
	c.pruneEarlyLocked(now)
	c.releaseSparesLocked(now)
	c.expirePinnedLocked(now)
	c.mu.Unlock()
	type gone struct {
		f    session.Flow
		site string
	}
	var expired []gone
	c.mu.Lock()
	for f, k := range c.flows {
		n, ok := counts[f]
		if ok && n.closed && !k.closed {
			k.closed = true
			c.countLocked("tcp-closed")
		}
		if ok && n.packets != k.packets {
			k.packets, k.seen = n.packets, now
			continue
		}
		if now.Sub(k.seen) > c.idleLimit(f, k) {
			c.remove(f, k)
			c.countLocked("expired")
			expired = append(expired, gone{f, k.site})
		}
	}
	live := make(map[string]func(session.Flow, proto.Code) error, len(c.live))
	for site, ss := range c.live {
		live[site] = ss.CloseFlow
	}
	c.mu.Unlock()
	for _, g := range expired {
		if closeFlow := live[g.site]; closeFlow != nil {
			_ = closeFlow(g.f, proto.CodeExpired)
		}
		c.log.Debug("flow expired at the relay", "site", g.site, "flow", g.f)
	}
}
