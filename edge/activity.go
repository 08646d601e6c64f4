package edge

import (
	"context"
	"time"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/xdp"
)

// activityEvery is how often the agent reads the datapath's per-flow
// counters to mark active flows seen. Flows are forwarded in XDP without
// the agent, so this is how the table learns they are alive; the error it
// adds to an idle timeout (2 min at the least) is at most this.
const activityEvery = 20 * time.Second

// activity is what the datapath counted for a flow; ok is false when
// the flow has no entries.
type activity func(f session.Flow, c session.Carrier) (fa flowActivity, ok bool)

// flowActivity is a flow's packets from the LAN host (out) and to it
// (back), and whether its TCP connection ended (xdp.PairActivity).
type flowActivity struct {
	out, back uint64
	closed    bool
}

func (fa flowActivity) packets() uint64 { return fa.out + fa.back }

// datapathActivity reads a flow's counters from its two entries.
// lan gives a flow's LAN view (see siteNAT.lan).
func datapathActivity(dp *datapath, lan func(session.Flow) session.Flow) activity {
	return func(f session.Flow, c session.Carrier) (flowActivity, bool) {
		out, back, err := xdp.EdgePair(lan(f), c)
		if err != nil {
			return flowActivity{}, false
		}
		n, closed, ok := dp.d.PairActivity(out, back)
		co, err := dp.d.FlowCounters(out.Key)
		if err != nil {
			co.Packets = 0 // not in yet (an inbound TCP flow's, until the host's first segment)
		}
		return flowActivity{out: co.Packets, back: n - co.Packets, closed: closed}, ok
	}
}

// touchActive marks seen every flow whose counters moved since the last
// call, and moves a TCP flow whose connection ended to the transitory
// timeout, so its ports come back in minutes, not hours; seen holds the
// counts of the last call and is updated.
func (a *agent) touchActive(seen map[session.Flow]uint64) {
	live := make(map[session.Flow]bool, len(seen))
	for _, e := range a.flows.Snapshot() {
		live[e.Flow] = true
		fa, ok := a.activity(e.Flow, e.Carrier)
		if !ok {
			continue
		}
		n, closed := fa.packets(), fa.closed
		if last, known := seen[e.Flow]; !known || n != last {
			seen[e.Flow] = n
			if known || n > 0 {
				_ = a.flows.Touch(e.Flow)
			}
		}
		if closed && e.State == flows.StateOpen {
			if a.flows.Update(e.Flow, e.Carrier, flows.StateTransitory) == nil {
				a.m.Inc(mTCPClosed)
			}
		}
		a.checkInbound(e, fa) // inbound flows that prove nothing end soon (inboundquota.go)
	}
	for f := range seen {
		if !live[f] {
			delete(seen, f)
		}
	}
}

// watchActivity runs touchActive until ctx ends.
func (a *agent) watchActivity(ctx context.Context) {
	seen := map[session.Flow]uint64{}
	t := time.NewTicker(activityEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.touchActive(seen)
		}
	}
}
