package relay

import (
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

// siteCountLocked is site's counts, made on first use; c.mu held.
func (c *carriers) siteCountLocked(site string) *siteCounts {
	sc := c.perSite[site]
	if sc == nil {
		sc = &siteCounts{}
		c.perSite[site] = sc
	}
	return sc
}

// pongCounters are the counters of ss's site the relay's Pong carries:
// its flows at the relay (the ports they hold), flows opened, closed and
// refused (opens and replayed entries).
func (c *carriers) pongCounters(ss *control.Session) []proto.Counter {
	site := ss.Site()
	flows := uint64(c.ports.Held(site))
	c.mu.Lock()
	sc := *c.siteCountLocked(site)
	c.mu.Unlock()
	return []proto.Counter{
		{ID: proto.CounterFlows, Value: flows},
		{ID: proto.CounterFlowOpens, Value: sc.opens},
		{ID: proto.CounterFlowCloses, Value: sc.closes},
		{ID: proto.CounterRefusals, Value: sc.refusals},
	}
}
