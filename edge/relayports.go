package edge

import (
	"net/netip"
	"sync"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/ports"
)

// relayPorts are the relay ports R the edge's flows use on the relay
// address of the first grant, a pool per carrier protocol, so that with
// edge-chooses-r (pick.go) it never picks one of its own twice. Its lock
// guards the set of pools and the address; each pool (ports.Edge) has
// its own, taken only after this one is released.
type relayPorts struct {
	mu    sync.Mutex
	pools map[session.Proto]*ports.Edge // nil until the first grant with relay addresses
	addr  netip.Addr                    // the relay address they are on
}

// setup makes the pools from a grant, once (a later grant of the same
// relay keeps them: its flows still hold their ports); false if it did
// not (made already, or the grant names no relay address).
func (r *relayPorts) setup(w *proto.Welcome, warn func(cr proto.CarrierRange, err error)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pools != nil || len(w.RelayAddrs) == 0 {
		return false
	}
	r.pools = map[session.Proto]*ports.Edge{}
	r.addr = w.RelayAddrs[0]
	for _, cr := range w.CarrierRanges {
		p, err := ports.NewEdge(ports.EdgeConfig{Ports: ports.Range{First: cr.Ports.First, Last: cr.Ports.Last}})
		if err != nil {
			warn(cr, err)
			continue
		}
		r.pools[cr.Proto] = p
	}
	return true
}

// pool is the pool of R for a carrier protocol on the relay address, nil
// if none.
func (r *relayPorts) pool(p session.Proto) (*ports.Edge, netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pools[p], r.addr
}

// claim records c's R, if it is on the pools' address.
func (r *relayPorts) claim(c session.Carrier) error {
	if p, addr := r.pool(c.Proto); p != nil && c.Relay.Addr() == addr {
		return p.Claim(c.Proto, c.Relay.Port())
	}
	return nil
}

// claimAll records the R of flows that hold one already (a restarted
// agent's restored flows).
func (r *relayPorts) claimAll(es []flows.Entry) {
	for _, e := range es {
		_ = r.claim(e.Carrier)
	}
}

// release gives back the R of a carrier that is gone.
func (r *relayPorts) release(c session.Carrier) {
	if p, addr := r.pool(c.Proto); p != nil && c.Relay.IsValid() && c.Relay.Addr() == addr {
		_ = p.Release(c.Proto, c.Relay.Port())
	}
}
