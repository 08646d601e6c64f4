package slowpath

import (
	"context"
	"time"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/xdp"
)

// Flows are forwarded in XDP without the agents, so the datapath's
// per-flow counters are how their tables learn a flow is alive: a Poller
// reads them every ActivityEvery and marks seen the flows whose counters
// moved. The error this adds to an idle timeout (2 min at the least) is
// at most ActivityEvery.
const ActivityEvery = 20 * time.Second

// Activity is what the datapath counted for a flow's two entries: the
// packets its out entry translated (from the site's side: the LAN host
// at the edge, the edge's carrier at the relay), those of its back entry,
// and whether its TCP connection ended (xdp.Datapath.PairActivity).
type Activity struct {
	Out, Back uint64
	Closed    bool
}

// Packets is both directions together.
func (a Activity) Packets() uint64 { return a.Out + a.Back }

// Activity reads a flow's counters from its two entries; ok is false when
// neither is in.
func (dp *Datapath) Activity(out, back xdp.Mapping) (Activity, bool) {
	n, closed, ok := dp.XDP.PairActivity(out, back)
	co, err := dp.XDP.FlowCounters(out.Key)
	if err != nil {
		co.Packets = 0 // not in yet (an inbound TCP flow's, until the host's first segment)
	}
	return Activity{Out: co.Packets, Back: n - co.Packets, Closed: closed}, ok
}

// Poller marks seen the flows of a table whose counters moved.
type Poller struct {
	Table *flows.Table
	// Read is what the datapath counted for a flow; ok is false when it
	// has no entries (yet, or none the agent can read: skipped).
	Read func(flows.Entry) (a Activity, ok bool)

	seen  map[session.Flow]seen // by flow, as of the Poll that last read it
	polls uint64
	buf   []flows.Entry // the last Poll's snapshot, reused
}

// seen is a flow's packets as the Poll numbered poll read them.
type seen struct{ packets, poll uint64 }

// Poll reads every flow's counters, touches those that moved since the
// last Poll (or, new since, counted any packet), and gives each flow
// read to each, for what the agent does with its activity (a TCP
// connection that ended, an inbound flow that proves nothing). Neither
// the table's lock nor the agent's is held while the counters are read.
func (p *Poller) Poll(each func(flows.Entry, Activity)) {
	if p.seen == nil {
		p.seen = map[session.Flow]seen{}
	}
	p.polls++
	p.buf = p.Table.AppendSnapshot(p.buf[:0])
	for _, e := range p.buf {
		a, ok := p.Read(e)
		if !ok {
			continue
		}
		n := a.Packets()
		last, known := p.seen[e.Flow]
		p.seen[e.Flow] = seen{n, p.polls}
		if known && n != last.packets || !known && n > 0 {
			_ = p.Table.Touch(e.Flow)
		}
		if each != nil {
			each(e, a)
		}
	}
	for f, s := range p.seen {
		if s.poll != p.polls {
			delete(p.seen, f) // gone from the table, or its entries from the datapath
		}
	}
}

// Run polls every ActivityEvery until ctx ends.
func (p *Poller) Run(ctx context.Context, each func(flows.Entry, Activity)) {
	Every(ctx, ActivityEvery, func() { p.Poll(each) })
}

// Every runs fn every d until ctx ends.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
