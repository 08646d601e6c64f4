package cgnat

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Pool is the agent's book of the pool's blocks: who holds each, so no
// block (and so no address:port) is ever given to two subscribers. It
// grants with paired pooling (RFC 4787 REQ-2: a subscriber's blocks are
// all on one public address while it holds any, so its mappings share
// one address), up to a quota per subscriber, and takes blocks back
// after a grace time (a returned block's ports rest before another
// subscriber gets them, as the remotes may still send to them). The
// datapath is told by the caller (xdp.Datapath.GrantBlock, SetSpent).
// Not safe for concurrent use.
type Pool struct {
	c      *Config
	quota  int
	grace  time.Duration
	now    func() time.Time
	owner  map[uint32]netip.Addr // block -> subscriber
	held   map[netip.Addr][]uint32
	free   []int                // free blocks per address (those resting included)
	rest   map[uint32]time.Time // returned block -> when it may be granted again
	cursor []int                // per address: where the search for a free block starts
}

// Errors of Grant: the caller marks the subscriber spent (its new flows
// are refused with ICMP administratively prohibited until a block comes
// back).
var (
	ErrQuota     = errors.New("cgnat: subscriber holds its quota of blocks")
	ErrPoolEmpty = errors.New("cgnat: no free block on the subscriber's address")
)

// NewPool is the book of c's pool, every block free: quota blocks a
// subscriber at most (1 to SubBlocks), grace before a returned block is
// granted again. now is the clock (nil: time.Now).
func NewPool(c *Config, quota int, grace time.Duration, now func() time.Time) (*Pool, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, errors.New("cgnat: no pool configured")
	}
	if quota < 1 || quota > SubBlocks {
		return nil, fmt.Errorf("cgnat: quota of %d blocks: want 1 to %d", quota, SubBlocks)
	}
	if now == nil {
		now = time.Now
	}
	p := &Pool{c: c, quota: quota, grace: grace, now: now, owner: map[uint32]netip.Addr{},
		held: map[netip.Addr][]uint32{}, free: make([]int, c.PoolAddrs), rest: map[uint32]time.Time{},
		cursor: make([]int, c.PoolAddrs)}
	for i := range p.free {
		p.free[i] = c.Blocks
	}
	return p, nil
}

// Held is the blocks sub holds, in the order granted (the datapath's).
func (p *Pool) Held(sub netip.Addr) []uint32 { return slices.Clone(p.held[sub]) }

// Blocks is how many blocks subscribers hold.
func (p *Pool) Blocks() int { return len(p.owner) }

// Owner is who holds block id.
func (p *Pool) Owner(id uint32) (netip.Addr, bool) { a, ok := p.owner[id]; return a, ok }

// Grant picks a block for sub: on the address of the blocks it holds, or
// for a subscriber holding none, on the address with the most free
// blocks (the lowest of equals). Within an address the search goes on
// from the last block granted there, so blocks are used round the
// address and a returned one rests the longest.
func (p *Pool) Grant(sub netip.Addr) (uint32, error) {
	if !p.c.isSub(sub) {
		return 0, fmt.Errorf("cgnat: %v is not a subscriber", sub)
	}
	h := p.held[sub]
	if len(h) >= p.quota {
		return 0, ErrQuota
	}
	addr := -1
	if len(h) > 0 {
		addr = int(h[0]) / p.c.Blocks
	} else {
		for i, n := range p.free {
			if n > 0 && (addr < 0 || n > p.free[addr]) {
				addr = i
			}
		}
		if addr < 0 {
			return 0, ErrPoolEmpty
		}
	}
	now := p.now()
	for j := range p.c.Blocks {
		n := (p.cursor[addr] + j) % p.c.Blocks
		id := p.c.BlockID(addr, n)
		if _, taken := p.owner[id]; taken {
			continue
		}
		if t, resting := p.rest[id]; resting {
			if now.Before(t) {
				continue
			}
			delete(p.rest, id)
		}
		p.owner[id] = sub
		p.held[sub] = append(h, id)
		p.free[addr]--
		p.cursor[addr] = (n + 1) % p.c.Blocks
		return id, nil
	}
	return 0, ErrPoolEmpty
}

// Return takes block id back from sub (its mappings are gone); it rests
// for the grace time before it is granted again.
func (p *Pool) Return(sub netip.Addr, id uint32) error {
	if o, ok := p.owner[id]; !ok || o != sub {
		return fmt.Errorf("cgnat: %v does not hold block %d", sub, id)
	}
	delete(p.owner, id)
	h := slices.DeleteFunc(p.held[sub], func(b uint32) bool { return b == id })
	if len(h) == 0 {
		delete(p.held, sub)
	} else {
		p.held[sub] = h
	}
	p.free[int(id)/p.c.Blocks]++
	p.rest[id] = p.now().Add(p.grace)
	return nil
}

// Restore records blocks sub already holds (read back from the pinned
// datapath after a restart), so they are not granted again.
func (p *Pool) Restore(sub netip.Addr, ids []uint32) error {
	for _, id := range ids {
		if int(id) >= p.c.NumBlocks() {
			return fmt.Errorf("cgnat: block %d outside the pool", id)
		}
		if o, ok := p.owner[id]; ok {
			return fmt.Errorf("cgnat: block %d held by %v and %v", id, o, sub)
		}
		if len(p.held[sub]) > 0 && int(p.held[sub][0])/p.c.Blocks != int(id)/p.c.Blocks {
			return fmt.Errorf("cgnat: %v holds blocks on two addresses", sub)
		}
		p.owner[id] = sub
		p.held[sub] = append(p.held[sub], id)
		p.free[int(id)/p.c.Blocks]--
	}
	return nil
}

// Subscribers is every subscriber holding a block, in address order.
func (p *Pool) Subscribers() []netip.Addr {
	out := make([]netip.Addr, 0, len(p.held))
	for sub := range p.held {
		out = append(out, sub)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
