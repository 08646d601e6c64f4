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

// activity is what the datapath counted for a flow; ok is false when it
// has no entries.
type activity func(f session.Flow, c session.Carrier) (a flowActivity, ok bool)

// flowActivity is a flow's packets both directions, whether any came
// from the site's side (carrier to remote: the LAN host answered), and
// whether its TCP connection ended (xdp.PairActivity).
type flowActivity struct {
	packets  uint64
	answered bool
	closed   bool
}

// datapathActivity reads a flow's counters from its two entries.
func datapathActivity(dp *datapath) activity {
	return func(f session.Flow, c session.Carrier) (flowActivity, bool) {
		out, back, err := xdp.RelayPair(f, c)
		if err != nil {
			return flowActivity{}, false
		}
		n, closed, ok := dp.d.PairActivity(out, back)
		co, err := dp.d.FlowCounters(out.Key)
		return flowActivity{packets: n, answered: err == nil && co.Packets > 0, closed: closed}, ok
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
	state = idleState(f, k, state) // an inbound TCP flow its remote never acknowledged: transitory
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
	counts := make(map[session.Flow]flowActivity, len(probes))
	for _, p := range probes {
		if a, ok := c.activity(p.f, p.c); ok {
			counts[p.f] = a
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
			c.m.Inc(mTCPClosed)
		}
		if ok && c.inb.quota.unanswered(f, k, n.answered, now) {
			// An inbound flow its LAN host never answered: whatever
			// the remote sends, it ends soon (inboundquota.go).
			c.remove(f, k)
			c.m.Inc(mInboundUnanswered)
			expired = append(expired, gone{f, k.site})
			continue
		}
		if ok && n.packets != k.packets {
			k.packets, k.seen = n.packets, now
			continue
		}
		if now.Sub(k.seen) > c.idleLimit(f, k) {
			c.remove(f, k)
			c.m.Inc(mExpired)
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
