package relay

import (
	"context"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// The edge's table is authoritative: it expires its flows and tells the
// relay. The relay expires on its own only what no edge will ever close,
// such as the flows of an edge that went away for good, a carrier that
// never bound, or an inbound offer whose opener never came, so that its
// ports come back. It waits the flow's timeout (the longer of the relay's
// and the lifetime the edge asked for) plus a grace for the edge to say so
// first. The flows' deadlines are kept in a session/flows table, as the
// edge's are, ordered in a heap: a sweep reads the datapath's counters
// without the registry's lock and, under it, only takes off the flows
// that are due.
const (
	expireEvery = slowpath.ActivityEvery
	expireGrace = time.Minute
	expireBatch = 1024 // flows expired under one hold of c.flows.mu
)

// activity is what the datapath counted for a flow (out: from the site's
// side, carrier to remote; back: from the remote); ok is false when it
// has no entries.
type activity func(f session.Flow, c session.Carrier) (a slowpath.Activity, ok bool)

// datapathActivity reads a flow's counters from its two entries.
func datapathActivity(dp *datapath) activity {
	return func(f session.Flow, c session.Carrier) (slowpath.Activity, bool) {
		out, back, err := xdp.RelayPair(f, c)
		if err != nil {
			return slowpath.Activity{}, false
		}
		return dp.Activity(out, back)
	}
}

// stateOf is the timeout state of flow f on carrier k.
func stateOf(f session.Flow, k *carrier) flows.State {
	state := flows.StateOpen
	switch {
	case !k.public.IsValid():
		// Never bound: its first packet is long overdue.
		state = flows.StateOpening
	case k.closed:
		state = flows.StateTransitory // its TCP connection ended
	}
	return idleState(f, k, state) // an inbound TCP flow its remote never acknowledged: transitory
}

// expiryEntry is f as the expiry table keeps it.
func expiryEntry(f session.Flow, k *carrier) flows.Entry {
	return flows.Entry{Flow: f, Carrier: k.carrier(), State: stateOf(f, k), Lifetime: k.lifetime, Value: k}
}

// syncLocked tells the expiry table what changed of k that its deadline
// or its counters depend on: its binding, its state. c.flows.mu held.
func (c *agent) syncLocked(f session.Flow, k *carrier) {
	_ = c.flows.t.Update(f, k.carrier(), stateOf(f, k))
}

// idleLimit is how long flow f may stay idle at the relay.
func (c *agent) idleLimit(f session.Flow, k *carrier) time.Duration {
	state := stateOf(f, k)
	d := c.timeouts.For(f.Proto, state)
	if state == flows.StateOpen {
		d = max(d, k.lifetime)
	}
	return d + expireGrace
}

// expire sweeps idle flows every expireEvery until ctx ends.
func (c *agent) expire(ctx context.Context) { slowpath.Every(ctx, expireEvery, c.sweep) }

// gone is a flow the relay expired, to tell its edge of.
type gone struct {
	f    session.Flow
	site string
}

// sweep marks active the flows whose counters moved, ends the inbound
// flows their LAN host never answered, and removes those idle past their
// limit, telling their edge if it is connected.
func (c *agent) sweep() {
	expired := c.pollActivity()
	now := c.now()
	c.early.prune(now)
	c.inb.releaseSpares(now)
	c.pinned.expire(now)
	expired = c.expireDue(expired)
	live := c.sessions.closers()
	for _, g := range expired {
		if closeFlow := live[g.site]; closeFlow != nil {
			_ = closeFlow(g.f, proto.CodeExpired)
		}
		c.log.Debug("flow expired at the relay", "site", g.site, "flow", g.f)
	}
}

// pollActivity reads every bound flow's counters, without c.flows.mu, into the
// expiry table (slowpath.Poller), marks closed the TCP flows whose
// connection ended, and removes the inbound UDP flows their LAN host did
// not answer in time (inboundquota.go).
func (c *agent) pollActivity() []gone {
	if c.activity == nil {
		return nil
	}
	// The inbound flows still to prove themselves: few (the inbound
	// quotas bound them), looked up under c.flows.mu once.
	watch := c.inb.unproven()
	c.flows.mu.Lock()
	for f := range watch {
		if k := c.flows.get(f); k == nil || k.lease.Proto != session.UDP {
			delete(watch, f) // only a UDP carrier's flow is judged
		}
	}
	c.flows.mu.Unlock()
	answered := make(map[session.Flow]bool, len(watch))
	c.flows.poll.Table = c.flows.t
	c.flows.poll.Read = func(e flows.Entry) (slowpath.Activity, bool) {
		if !e.Carrier.Public.IsValid() {
			return slowpath.Activity{}, false // no entries before its first packet
		}
		return c.activity(e.Flow, e.Carrier)
	}
	c.flows.poll.Poll(func(e flows.Entry, a slowpath.Activity) {
		if watch[e.Flow] {
			answered[e.Flow] = a.Out > 0
		}
		if a.Closed { // a half-open one too: acknowledged later, it stays transitory
			c.flows.mu.Lock()
			if k := c.flows.get(e.Flow); k != nil && !k.closed {
				k.closed = true
				c.m.Inc(mTCPClosed)
				c.syncLocked(e.Flow, k)
			}
			c.flows.mu.Unlock()
		}
	})
	var expired []gone
	now := c.now()
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	for f, ans := range answered {
		if k := c.flows.get(f); k != nil && c.inb.unanswered(f, k.lease.Proto == session.UDP, ans, now) {
			// An inbound flow its LAN host never answered: whatever
			// the remote sends, it ends soon (inboundquota.go).
			c.remove(f, k)
			c.m.Inc(mInboundUnanswered)
			expired = append(expired, gone{f, k.site})
		}
	}
	return expired
}

// expireDue removes the flows the expiry table has due, in batches of
// expireBatch under c.flows.mu, and appends them to expired. A flow whose
// entry no longer says what its carrier does (a change no syncLocked
// told) is put back as it is now, with the time it was last seen.
func (c *agent) expireDue(expired []gone) []gone {
	var due []flows.Entry
	for {
		c.flows.mu.Lock()
		due = c.flows.t.Expire(due[:0], expireBatch)
		for _, e := range due {
			k := e.Value.(*carrier) // out of the registry now

			if now := expiryEntry(e.Flow, k); now.State != e.State || now.Carrier != e.Carrier || now.Lifetime != e.Lifetime {
				now.LastSeen = e.LastSeen
				_ = c.flows.t.AddEntry(now)
				continue
			}
			c.releaseFlow(e.Flow, k)
			c.m.Inc(mExpired)
			expired = append(expired, gone{e.Flow, k.site})
		}
		c.flows.mu.Unlock()
		if len(due) < expireBatch {
			return expired
		}
	}
}
