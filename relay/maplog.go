package relay

import (
	"time"

	"github.com/unmap-dev/unmap/session"
)

// mapLogEvery is how often the relay logs that the datapath refused a
// flow's entries. A full flow table refuses every carrier packet that
// tries to bind (the carrier stays unbound, so the next packet tries
// again): one Error line per packet would flood the log exactly when the
// operator needs it. Each refusal is counted (map-failed); the log says
// it once per interval, with how many it did not say.
const mapLogEvery = 10 * time.Second

// mapLog is the state of that log line; guarded by carriers.mu.
type mapLog struct {
	last       time.Time
	suppressed uint64
}

// mapFailedLocked counts and, at most once per mapLogEvery, logs a flow
// whose entries the datapath refused; c.mu held.
func (c *carriers) mapFailedLocked(f session.Flow, err error) {
	c.m.Inc(mMapFailed)
	now := c.now()
	if !c.mapLog.last.IsZero() && now.Sub(c.mapLog.last) < mapLogEvery {
		c.mapLog.suppressed++
		return
	}
	c.log.Error("datapath refused a flow's entries (flow table full?); see map-failed in unmap status",
		"flow", f, "err", err, "refused_since_last_line", c.mapLog.suppressed)
	c.mapLog = mapLog{last: now}
}
