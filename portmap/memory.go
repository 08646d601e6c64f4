package portmap

import (
	"net/netip"
	"sync"
)

// MemBackend is a Backend in memory: a public IPv4 and its port range,
// ports some other user holds (Busy), and the mappings in effect. Tests
// and benchmarks use it; so can a dry run.
type MemBackend struct {
	mu          sync.Mutex
	Public      netip.Addr
	First, Last uint16
	Busy        map[uint16]bool // external ports held by something else
	Live        map[key]Mapping // by protocol and external endpoint
}

// NewMemBackend is a backend of public's ports first to last.
func NewMemBackend(public netip.Addr, first, last uint16) *MemBackend {
	return &MemBackend{Public: public, First: first, Last: last, Busy: map[uint16]bool{}, Live: map[key]Mapping{}}
}

func (b *MemBackend) External4() (netip.Addr, uint16, uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Public, b.First, b.Last
}

func (b *MemBackend) Add(m Mapping) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.External.Addr().Is4() && b.Busy[m.External.Port()] {
		return ErrPortInUse
	}
	b.Live[key{m.Proto, m.External}] = m
	return nil
}

func (b *MemBackend) Remove(m Mapping) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.Live, key{m.Proto, m.External})
}

// Lookup is the mapping an inbound flow to external from remote uses.
func (b *MemBackend) Lookup(proto Proto, external, remote netip.AddrPort) (Mapping, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.Live[key{proto, external}]
	if !ok || !m.Admits(remote) {
		return Mapping{}, false
	}
	return m, true
}

// Len is the number of mappings in effect.
func (b *MemBackend) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.Live)
}
