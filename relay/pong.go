package relay

import (
	"sync/atomic"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/proto"
)

// siteCounts are a site's flow events at the relay since it started,
// which its edge gets in every Pong (proto.CapCounters) and shows in
// `unmap status` (section relay): the relay's view of the site, for an
// operator who can see the edge only.
type siteCounts struct {
	opens, closes, refusals uint64
}

// siteTally is siteCounts as they are counted: atomics, so that a flow
// event counts without a lock and a Pong reads without one.
type siteTally struct {
	opens, closes, refusals atomic.Uint64
}

// What a flow event does to its site's counts (sessionBook.count).
func countOpen(t *siteTally)    { t.opens.Add(1) }
func countClose(t *siteTally)   { t.closes.Add(1) }
func countRefusal(t *siteTally) { t.refusals.Add(1) }

// pongCounters are the counters of ss's site the relay's Pong carries:
// its flows at the relay (the ports they hold), flows opened, closed and
// refused (opens and replayed entries). The sessions' lock alone: a Pong
// never waits for the flows' lock.
func (c *agent) pongCounters(ss *control.Session) []proto.Counter { return c.siteCounters(ss.Site()) }

// siteCounters are pongCounters for site.
func (c *agent) siteCounters(site string) []proto.Counter {
	flows := uint64(c.ports.Held(site))
	sc := c.sessions.counts(site)
	return []proto.Counter{
		{ID: proto.CounterFlows, Value: flows},
		{ID: proto.CounterFlowOpens, Value: sc.opens},
		{ID: proto.CounterFlowCloses, Value: sc.closes},
		{ID: proto.CounterRefusals, Value: sc.refusals},
	}
}
