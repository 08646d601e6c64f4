package edge

import (
	"context"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// activity is what the datapath counted for a flow (out: from the LAN
// host; back: to it); ok is false when the flow has no entries.
type activity func(f session.Flow, c session.Carrier) (fa slowpath.Activity, ok bool)

// datapathActivity reads a flow's counters from its two entries.
// lan gives a flow's LAN view (see siteNAT.lan).
func datapathActivity(dp *datapath, lan func(session.Flow) session.Flow) activity {
	return func(f session.Flow, c session.Carrier) (slowpath.Activity, bool) {
		out, back, err := xdp.EdgePair(lan(f), c)
		if err != nil {
			return slowpath.Activity{}, false
		}
		return dp.Activity(out, back)
	}
}

// touchActive marks seen every flow whose counters moved since the last
// call (slowpath.Poller) and applies what they say (flowActivity).
func (a *agent) touchActive() { a.poller().Poll(a.flowActivity) }

// watchActivity runs touchActive every slowpath.ActivityEvery until ctx
// ends.
func (a *agent) watchActivity(ctx context.Context) { a.poller().Run(ctx, a.flowActivity) }

// poller is the agent's activity poller on its table and counters as
// they are now (tests replace both).
func (a *agent) poller() *slowpath.Poller {
	a.poll.Table = a.flows
	a.poll.Read = func(e flows.Entry) (slowpath.Activity, bool) { return a.activity(e.Flow, e.Carrier) }
	return &a.poll
}

// flowActivity moves a TCP flow whose connection ended to the transitory
// timeout, so its ports come back in minutes, not hours, and ends the
// inbound flows that prove nothing.
func (a *agent) flowActivity(e flows.Entry, fa slowpath.Activity) {
	if fa.Closed && e.State == flows.StateOpen {
		if a.flows.Update(e.Flow, e.Carrier, flows.StateTransitory) == nil {
			a.m.Inc(mTCPClosed)
		}
	}
	a.checkInbound(e, fa) // inboundquota.go
}
