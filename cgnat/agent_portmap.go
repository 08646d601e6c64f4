package cgnat

import (
	"net/netip"
	"slices"

	"github.com/unmap-dev/unmap/session/cgnat"
)

// MapBlocks is the blocks whose ports sub's explicit mappings (PCP,
// NAT-PMP: portmap.go) may take: the blocks its record holds now (not
// those withdrawn), after granting it one, logged as every grant is, if
// it holds none and its quota and the pool allow. In deterministic mode,
// its computed blocks.
func (a *Agent) MapBlocks(sub netip.Addr) ([]uint32, error) {
	if a.s.Deterministic {
		return cgnat.Deterministic{Config: &a.s.Datapath, Quota: a.s.Quota}.Blocks(sub)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if ids := a.liveBlocks(sub); len(ids) > 0 {
		return ids, nil
	}
	if err := a.grant(sub, false); err != nil {
		return nil, err
	}
	return a.liveBlocks(sub), nil
}

// liveBlocks is the blocks sub holds less those withdrawn; a.mu is held.
func (a *Agent) liveBlocks(sub netip.Addr) []uint32 {
	return slices.DeleteFunc(a.pool.Held(sub), func(id uint32) bool { _, w := a.withdrawn[id]; return w })
}

// explicit reports whether mapping k is one its subscriber asked for:
// it ends with its lifetime (the port mapper's), never for idleness.
func (a *Agent) explicit(k cgnat.Key, o cgnat.Out, slots slotState) (bool, error) {
	p := 0 // TCP's plane
	switch k.Proto {
	case 6:
	case 17:
		p = 1
	default:
		return false, nil // only TCP and UDP are mapped on request
	}
	off, ok := a.s.Datapath.PoolPort(o.Addr, o.Port)
	if !ok {
		return false, nil
	}
	_, explicit, err := slots(cgnat.Slot{Plane: p, Off: off})
	return explicit, err
}
