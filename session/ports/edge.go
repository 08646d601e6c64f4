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
}

// Edge allocates carrier source ports E, unique per protocol on the WAN
// address. It is safe for concurrent use.
type Edge struct {
	mu    sync.Mutex
	r     Range
	t     ticker
	pools [256]*Pool // by protocol number
	inUse int

	// Refused counts refusals of Grant, Claim and Release by reason.
	Refused Counters
}

// NewEdge checks c and makes an allocator.
func NewEdge(c EdgeConfig) (*Edge, error) {
	if err := c.Ports.Check(); err != nil {
		return nil, err
	}
	return &Edge{r: c.Ports, t: newTicker(c.Now, c.Quarantine)}, nil
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
