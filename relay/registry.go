package relay

import (
	"sync"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/slowpath"
)

// flowRegistry is the part that keeps the relay's flows, each with its
// carrier: a session/flows table, which keeps their idle deadlines in a
// heap (expire.go) and is their one index by flow, the same flows by
// site (sitelist.go) and by the relay port they lease. Its lock, mu,
// guards all of it and every carrier's fields; it is the first in the
// lock order (doc.go): a path that needs another part's state as well
// takes mu first, or not at all. Writes go through agent.add and
// agent.remove.
type flowRegistry struct {
	poll slowpath.Poller // reads activity into the table; used by the sweep alone, without mu

	mu      sync.Mutex
	t       *flows.Table
	bySite  map[string]*siteFlows
	byLease map[leaseKey]session.Flow
}

// newRegistry is the table of the relay's flows, which orders their
// deadlines by opts.
func newRegistry(opts flows.Options) (*flowRegistry, error) {
	t, err := flows.New(opts)
	return &flowRegistry{t: t, bySite: map[string]*siteFlows{}, byLease: map[leaseKey]session.Flow{}}, err
}

// put books flow f on carrier k, in place of what f had; mu held.
func (r *flowRegistry) put(f session.Flow, k *carrier) {
	// Seen now; the table has no bound.
	if old, replaced, _ := r.t.Put(expiryEntry(f, k)); replaced {
		r.unindex(old.Value.(*carrier))
	}
	r.link(f, k)
	r.byLease[leaseKey{k.lease.Key, k.lease.Port}] = f
}

// unbook takes k out of the indexes (not the table); mu held.
func (r *flowRegistry) unbook(k *carrier) {
	delete(r.byLease, leaseKey{k.lease.Key, k.lease.Port})
	r.unindex(k)
}

// lookup is f's carrier.
func (r *flowRegistry) lookup(f session.Flow) (*carrier, bool) {
	v, ok := r.t.Value(f)
	if !ok {
		return nil, false
	}
	return v.(*carrier), true
}

// get is f's carrier, nil if the relay has no flow f.
func (r *flowRegistry) get(f session.Flow) *carrier {
	k, _ := r.lookup(f)
	return k
}

// len is how many flows the relay has.
func (r *flowRegistry) len() int { return r.t.Len() }

// all copies the flows with their carriers (status, tests).
func (r *flowRegistry) all() map[session.Flow]*carrier {
	es := r.t.Snapshot()
	m := make(map[session.Flow]*carrier, len(es))
	for _, e := range es {
		m[e.Flow] = e.Value.(*carrier)
	}
	return m
}
