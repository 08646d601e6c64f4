package relay

import (
	"log/slog"
	"sync"
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

// mapLog is the part that rate-limits that log line; its lock is a leaf.
type mapLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed uint64
}

// mapFailedLocked counts and, at most once per mapLogEvery, logs a flow
// whose entries the datapath refused; c.flows.mu held.
func (c *agent) mapFailedLocked(f session.Flow, err error) {
	c.m.Inc(mMapFailed)
	c.mapLog.failed(c.log, c.now(), f, err)
}

// failed logs f's refusal unless the last line was less than mapLogEvery
// before now.
func (l *mapLog) failed(log *slog.Logger, now time.Time, f session.Flow, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < mapLogEvery {
		l.suppressed++
		return
	}
	log.Error("datapath refused a flow's entries (flow table full?); see map-failed in unmap status",
		"flow", f, "err", err, "refused_since_last_line", l.suppressed)
	l.last, l.suppressed = now, 0
}
