package relay

import (
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// The relay remembers the inbound flows an edge refused for a short
// while, so that a remote retrying, or an Internet host sending to many
// ports and addresses of a site, costs the edge one offer per flow per
// refusedTTL rather than one per packet. The TTL is short so that a host
// that starts listening is reachable soon after; a new session of the
// site (perhaps with a new policy) decides anew at once.
const (
	refusedTTL = 10 * time.Second
	refusedMax = 4096 // flows remembered in all; when full the oldest go first
)

// refusedCodes are the edge's answers that hold for a while: its policy,
// a host that reset the connection, a protocol it cannot carry. The
// others (no port free, host silent, no answer) may not hold a second
// later and are not remembered.
var refusedCodes = map[proto.Code]bool{proto.CodeRefused: true, proto.CodeClosed: true, proto.CodeUnsupportedProto: true}

// refusal is one remembered refusal.
type refusal struct {
	session uint64 // the session that refused
	code    proto.Code
	until   time.Time
}

type refusedAt struct {
	flow  session.Flow
	until time.Time
}

// refusedCache is a bounded, expiring set of refused flows. Every entry
// lives refusedTTL, so insertion order is expiry order: a FIFO queue
// finds both the expired entries and the oldest one in O(1). Its zero
// value is empty and ready; it is guarded by inboundOffers.mu.
type refusedCache struct {
	by    map[session.Flow]refusal
	queue []refusedAt // oldest first; may name a flow refused again since (its until differs)
}

// get reports the code a flow was refused with by session sessionID, if
// that refusal still holds at now.
func (r *refusedCache) get(f session.Flow, sessionID uint64, now time.Time) (proto.Code, bool) {
	e, ok := r.by[f]
	if !ok || e.session != sessionID || !now.Before(e.until) {
		return 0, false
	}
	return e.code, true
}

// add remembers a refusal from now on; evicted is the number of live
// entries pushed out early to make room.
func (r *refusedCache) add(f session.Flow, sessionID uint64, code proto.Code, now time.Time) (evicted int) {
	if r.by == nil {
		r.by = map[session.Flow]refusal{}
	}
	for len(r.queue) > 0 && (!now.Before(r.queue[0].until) || len(r.queue) >= refusedMax) {
		if r.pop(now) {
			evicted++
		}
	}
	until := now.Add(refusedTTL)
	r.by[f] = refusal{session: sessionID, code: code, until: until}
	r.queue = append(r.queue, refusedAt{f, until})
	return evicted
}

// pop drops the oldest queue entry and its flow's refusal unless the
// flow was refused again since; it reports whether a live refusal went.
func (r *refusedCache) pop(now time.Time) bool {
	q := r.queue[0]
	r.queue[0] = refusedAt{}
	r.queue = r.queue[1:]
	if e, ok := r.by[q.flow]; ok && e.until.Equal(q.until) {
		delete(r.by, q.flow)
		return now.Before(q.until)
	}
	return false
}

// len is the number of flows remembered (some may have expired).
func (r *refusedCache) len() int { return len(r.by) }
