package relay

import (
	"time"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/xlat"
)

// With edge-chooses-r the edge sends a flow's first packet on the carrier
// at once, beside its FlowOpen on the control channel, and the packet
// often wins: the relay holds it until the FlowOpen names its carrier,
// and binds it then. Only a session that may pick R has packets held, on
// the CGNAT address it comes from, and the hold is bounded in packets
// and time, so strays cost little. The same hold keeps a UDP carrier's
// packets that come before its proof (bind.go): they go on once the
// proof binds the carrier, if they came from the port it bound.
const (
	earlyPerCarrier = 4               // packets held per carrier
	earlyMax        = 1024            // packets held in all
	earlyWait       = 2 * time.Second // then they go
)

type earlyPkt struct {
	key   xlat.Key // as the datapath missed it
	frame []byte
	at    time.Time
}

// holdEarlyLocked keeps a carrier packet that found no carrier if a
// session behind its CGNAT address may have picked its R, or its R was
// offered to an edge that has not answered yet (its opener or carrier
// SYN goes as it replies); c.mu held.
func (c *carriers) holdEarlyLocked(lk leaseKey, key xlat.Key, frame []byte) bool {
	if !c.sessions.picks(lk.Public) && !c.offering[lk] {
		return false
	}
	return c.holdLocked(lk, key, frame, mEarlyHeld)
}

// holdLocked keeps a carrier packet for lk within the bounds, counted
// under held; false if it cannot (only part of it was handed over, or
// the hold is full). c.mu held.
func (c *carriers) holdLocked(lk leaseKey, key xlat.Key, frame []byte, held metrics.Counter) bool {
	if frame == nil {
		return false
	}
	now := c.now()
	if c.earlyN >= earlyMax {
		c.pruneEarlyLocked(now)
	}
	if c.earlyN >= earlyMax || len(c.early[lk]) >= earlyPerCarrier {
		c.m.Inc(mEarlyOverflow)
		return false
	}
	c.early[lk] = append(c.early[lk], earlyPkt{key, frame, now})
	c.earlyN++
	c.m.Inc(held)
	return true
}

// takeEarlyLocked hands over the packets held for a carrier; c.mu held.
func (c *carriers) takeEarlyLocked(lk leaseKey) []earlyPkt {
	ps := c.early[lk]
	if len(ps) == 0 {
		return nil
	}
	delete(c.early, lk)
	c.earlyN -= len(ps)
	now := c.now()
	out := ps[:0]
	for _, p := range ps {
		if now.Sub(p.at) <= earlyWait {
			out = append(out, p)
		} else {
			c.m.Inc(mEarlyExpired)
		}
	}
	return out
}

// pruneEarlyLocked drops packets held longer than earlyWait; c.mu held.
func (c *carriers) pruneEarlyLocked(now time.Time) {
	for lk, ps := range c.early {
		keep := ps[:0]
		for _, p := range ps {
			if now.Sub(p.at) <= earlyWait {
				keep = append(keep, p)
			} else {
				c.earlyN--
				c.m.Inc(mEarlyExpired)
			}
		}
		if len(keep) == 0 {
			delete(c.early, lk)
		} else {
			c.early[lk] = keep
		}
	}
}
