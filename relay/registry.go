package relay

import (
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
)

// registry is the relay's flows, each with its carrier: a session/flows
// table, which keeps their idle deadlines in a heap (expire.go) and is
// their one index by flow. Writes go through carriers.add and
// carriers.remove, under carriers.mu.
type registry struct{ t *flows.Table }

// lookup is f's carrier.
func (r registry) lookup(f session.Flow) (*carrier, bool) {
	v, ok := r.t.Value(f)
	if !ok {
		return nil, false
	}
	return v.(*carrier), true
}

// get is f's carrier, nil if the relay has no flow f.
func (r registry) get(f session.Flow) *carrier {
	k, _ := r.lookup(f)
	return k
}

// len is how many flows the relay has.
func (r registry) len() int { return r.t.Len() }

// all copies the flows with their carriers (status, tests).
func (r registry) all() map[session.Flow]*carrier {
	es := r.t.Snapshot()
	m := make(map[session.Flow]*carrier, len(es))
	for _, e := range es {
		m[e.Flow] = e.Value.(*carrier)
	}
	return m
}
