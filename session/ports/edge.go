package ports

import (
	"sync"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// EdgeConfig configures an Edge; the zero value of an optional field
// means its default.
type EdgeConfig struct {
	Ports      Range            // carrier source ports E; reserve them in the kernel (see Reserve)
	Quarantine time.Duration    // 0 means DefaultQuarantine, negative none
	Now        func() time.Time // clock; nil means time.Now
	// InboundShare is the percentage of the range, per protocol, that
	// inbound grants (GrantInbound) may hold; 0 means
	// DefaultInboundShare, 100 keeps nothing for outbound flows.
	InboundShare int
}

// Edge allocates carrier source ports E, unique per protocol on the WAN
// address. It is safe for concurrent use.
type Edge struct {
	mu    sync.Mutex
	r     Range
	t     ticker
	pools [256]*Pool // by protocol number
	inUse int
	// Ports held by inbound grants, by protocol number: Release tells
	// them from outbound ones by this set.
	inbound    [256]map[uint16]struct{}
	inboundCap int

	// Refused counts refusals of Grant, Claim and Release by reason.
	Refused Counters
}

// NewEdge checks c and makes an allocator.
func NewEdge(c EdgeConfig) (*Edge, error) {
	if err := c.Ports.Check(); err != nil {
		return nil, err
	}
	return &Edge{r: c.Ports, t: newTicker(c.Now, c.Quarantine), inboundCap: inboundCap(c.Ports.Len(), c.InboundShare)}, nil
}

// GrantInbound is Grant for an inbound flow: refused with
// ReasonInboundShare once inbound grants hold their share of proto's
// ports (inbound.go).
func (e *Edge) GrantInbound(proto session.Proto) (uint16, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.inbound[proto]) >= e.inboundCap {
		return 0, e.Refused.count(refuse(ReasonInboundShare, "inbound flows hold %d of the %d ports of %v", len(e.inbound[proto]), e.r.Len(), e.r))
	}
	port, err := e.pool(proto).Take(e.t.tick(), e.t.q)
	if err != nil {
		return 0, e.Refused.count(err)
	}
	if e.inbound[proto] == nil {
		e.inbound[proto] = map[uint16]struct{}{}
	}
	e.inbound[proto][port] = struct{}{}
	e.inUse++
	return port, nil
}

// InboundInUse is the number of ports of proto held by inbound grants.
func (e *Edge) InboundInUse(proto session.Proto) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.inbound[proto])
}

// Grant hands out a port for a carrier of proto.
func (e *Edge) Grant(proto session.Proto) (uint16, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	port, err := e.pool(proto).Take(e.t.tick(), e.t.q)
	if err != nil {
		return 0, e.Refused.count(err)
	}
	e.inUse++
	return port, nil
}

// Claim marks port in use for proto, for carriers that survived an agent
// restart in the pinned XDP maps.
func (e *Edge) Claim(proto session.Proto, port uint16) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.pool(proto).Claim(port); err != nil {
		return e.Refused.count(err)
	}
	e.inUse++
	return nil
}

// Release returns port of proto; it rests for the quarantine.
func (e *Edge) Release(proto session.Proto, port uint16) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.pool(proto).Put(port, e.t.tick()); err != nil {
		return e.Refused.count(err)
	}
	delete(e.inbound[proto], port)
	e.inUse--
	return nil
}

// InUse is the number of ports held over all protocols.
func (e *Edge) InUse() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.inUse
}

// Range is the configured range.
func (e *Edge) Range() Range { return e.r }

func (e *Edge) pool(proto session.Proto) *Pool {
	p := e.pools[proto]
	if p == nil {
		p = NewPool(e.r, e.t.start(e.r.Len()))
		e.pools[proto] = p
	}
	return p
}
