package relay

import (
	"sync"
	"sync/atomic"
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

// earlyHolds is the part that holds carrier packets that came before
// what binds them (a FlowOpen, an offer's answer, a UDP carrier's
// proof), and knows which offered carriers' packets may come early. Its
// lock is a leaf; counters need none.
type earlyHolds struct {
	m *metrics.Counters

	mu       sync.Mutex
	held     map[leaseKey][]earlyPkt // by the carrier they are for
	n        atomic.Int64            // packets in held; written under mu, read without it (take)
	offering map[leaseKey]bool       // carriers offered to an edge, not yet answered: their packets may come early
}

func newEarlyHolds(m *metrics.Counters) *earlyHolds {
	return &earlyHolds{m: m, held: map[leaseKey][]earlyPkt{}, offering: map[leaseKey]bool{}}
}

// holdEarly keeps a carrier packet that found no carrier if a session
// behind its CGNAT address may have picked its R (picks), or its R was
// offered to an edge that has not answered yet (its opener or carrier
// SYN goes as it replies).
func (e *earlyHolds) holdEarly(lk leaseKey, key xlat.Key, frame []byte, picks bool, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !picks && !e.offering[lk] {
		return false
	}
	return e.holdLocked(lk, key, frame, mEarlyHeld, now)
}

// hold keeps a carrier packet for lk within the bounds, counted under
// held; false if it cannot (only part of it was handed over, or the hold
// is full).
func (e *earlyHolds) hold(lk leaseKey, key xlat.Key, frame []byte, held metrics.Counter, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holdLocked(lk, key, frame, held, now)
}

func (e *earlyHolds) holdLocked(lk leaseKey, key xlat.Key, frame []byte, held metrics.Counter, now time.Time) bool {
	if frame == nil {
		return false
	}
	if e.n.Load() >= earlyMax {
		pruneLists(e.held, e.fresh(now))
	}
	if e.n.Load() >= earlyMax || len(e.held[lk]) >= earlyPerCarrier {
		e.m.Inc(mEarlyOverflow)
		return false
	}
	e.held[lk] = append(e.held[lk], earlyPkt{key, frame, now})
	e.n.Add(1)
	e.m.Inc(held)
	return true
}

// take hands over the packets held for a carrier.
func (e *earlyHolds) take(lk leaseKey, now time.Time) []earlyPkt {
	if e.n.Load() == 0 {
		return nil // the common case: nothing held for anyone
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := e.held[lk]
	if len(ps) == 0 {
		return nil
	}
	delete(e.held, lk)
	e.n.Add(-int64(len(ps)))
	out := ps[:0]
	for _, p := range ps {
		if now.Sub(p.at) <= earlyWait {
			out = append(out, p)
		} else {
			e.m.Inc(mEarlyExpired)
		}
	}
	return out
}

// offered marks lk offered to an edge, or (on false) no longer, dropping
// what was held for it: nothing, unless the offer failed.
func (e *earlyHolds) offered(lk leaseKey, on bool, now time.Time) {
	if on {
		e.mu.Lock()
		e.offering[lk] = true
		e.mu.Unlock()
		return
	}
	e.mu.Lock()
	delete(e.offering, lk)
	e.mu.Unlock()
	_ = e.take(lk, now)
}

// count is how many packets are held.
func (e *earlyHolds) count() int { return int(e.n.Load()) }

// prune drops packets held longer than earlyWait.
func (e *earlyHolds) prune(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pruneLists(e.held, e.fresh(now))
}

// fresh says whether a packet was held no longer than earlyWait at now,
// and counts it out if not; e.mu held.
func (e *earlyHolds) fresh(now time.Time) func(earlyPkt) bool {
	return func(p earlyPkt) bool {
		if now.Sub(p.at) <= earlyWait {
			return true
		}
		e.n.Add(-1)
		e.m.Inc(mEarlyExpired)
		return false
	}
}
