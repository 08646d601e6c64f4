package cgnat

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func testPoolConfig() Config {
	return Config{Inside: netip.MustParsePrefix("100.64.0.0/24"), PoolFirst: netip.MustParseAddr("203.0.113.10"),
		PoolAddrs: 3, PortLo: 1024, BlockBits: 9, Blocks: 4}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func sub(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 64, 0, byte(i)}) }

// Paired pooling, the quota, exhaustion of an address, the grace time.
func TestPoolGrants(t *testing.T) {
	c := testPoolConfig()
	clk := &clock{t: time.Unix(1000, 0)}
	p, err := NewPool(&c, 3, time.Minute, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	a, b := sub(10), sub(11)
	var ids []uint32
	for range 3 {
		id, err := p.Grant(a)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if addr0, _ := c.BlockAt(ids[0]); addr0 != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("first block on %v", addr0)
	}
	for _, id := range ids[1:] {
		if int(id)/c.Blocks != int(ids[0])/c.Blocks {
			t.Errorf("blocks %v on two addresses: pooling is not paired", ids)
		}
	}
	if _, err := p.Grant(a); !errors.Is(err, ErrQuota) {
		t.Errorf("past the quota: %v", err)
	}
	// B starts on the address with the most free blocks: another one.
	bid, err := p.Grant(b)
	if err != nil || int(bid)/c.Blocks == int(ids[0])/c.Blocks {
		t.Fatalf("b's block %d (%v) shares a's address", bid, err)
	}
	// A's address has one block left; a fourth subscriber starting there
	// would be fine, but A itself is at its quota. Return one: it rests.
	if err := p.Return(a, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := p.Return(a, ids[1]); err == nil {
		t.Error("returned twice")
	}
	got, err := p.Grant(a)
	if err != nil || got == ids[1] {
		t.Fatalf("grant after a return: %d %v (the returned block must rest)", got, err)
	}
	if err := p.Return(a, got); err != nil {
		t.Fatal(err)
	}
	// Both free blocks of A's address rest now: nothing to give A.
	if _, err := p.Grant(a); !errors.Is(err, ErrPoolEmpty) {
		t.Errorf("all of the address resting: %v", err)
	}
	clk.t = clk.t.Add(time.Minute)
	if _, err := p.Grant(a); err != nil {
		t.Errorf("after the grace time: %v", err)
	}
	if _, err := p.Grant(netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("granted outside the inside prefix")
	}
}

// Random grants and returns: no block ever has two holders, a
// subscriber's blocks stay on one address and within the quota, the
// free counts match, and Restore of the same book refuses a block held.
func TestPoolNeverTwice(t *testing.T) {
	c := testPoolConfig()
	clk := &clock{t: time.Unix(0, 0)}
	p, err := NewPool(&c, 4, 10*time.Second, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		s := sub(2 + r.IntN(8))
		clk.t = clk.t.Add(time.Duration(r.IntN(3)) * time.Second)
		if h := p.Held(s); len(h) > 0 && r.IntN(2) == 0 {
			if err := p.Return(s, h[r.IntN(len(h))]); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := p.Grant(s); err != nil && !errors.Is(err, ErrQuota) && !errors.Is(err, ErrPoolEmpty) {
			t.Fatal(err)
		}
		seen := map[uint32]netip.Addr{}
		free := make([]int, c.PoolAddrs)
		for i := range free {
			free[i] = c.Blocks
		}
		for h, ids := range p.held {
			if len(ids) > 4 {
				t.Fatalf("%v holds %d blocks", h, len(ids))
			}
			for _, id := range ids {
				if o, ok := seen[id]; ok {
					t.Fatalf("block %d held by %v and %v", id, o, h)
				}
				seen[id] = h
				free[int(id)/c.Blocks]--
				if int(id)/c.Blocks != int(ids[0])/c.Blocks {
					t.Fatalf("%v holds blocks on two addresses", h)
				}
			}
		}
		for i := range free {
			if free[i] != p.free[i] {
				t.Fatalf("address %d: %d free, book says %d", i, free[i], p.free[i])
			}
		}
	}
	for h, ids := range p.held {
		if len(ids) > 0 {
			if err := p.Restore(sub(99), ids[:1]); err == nil {
				t.Fatalf("restored block %d held by %v to another", ids[0], h)
			}
			break
		}
	}
}
