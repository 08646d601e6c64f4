package cgnat

import (
	"net/netip"
	"testing"
)

// Every subscriber's blocks are its own and on one address, and every
// port of them looks up to it; ports of no subscriber look up to none.
func TestDeterministic(t *testing.T) {
	c := Config{Inside: netip.MustParsePrefix("100.64.0.0/26"), PoolFirst: netip.MustParseAddr("203.0.113.10"),
		PoolAddrs: 6, PortLo: 1024, BlockBits: 9, Blocks: 48}
	d := Deterministic{Config: &c, Quota: 4}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	owner := map[uint32]netip.Addr{}
	for i := range c.Subscribers() {
		sub := addr4(u32(c.Inside.Addr()) + uint32(i))
		ids, err := d.Blocks(sub)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := c.BlockAt(ids[0])
		for _, id := range ids {
			if o, ok := owner[id]; ok {
				t.Fatalf("block %d of %v and %v", id, o, sub)
			}
			owner[id] = sub
			a, base := c.BlockAt(id)
			if a != first {
				t.Fatalf("%v's blocks on %v and %v", sub, first, a)
			}
			for _, p := range []uint16{base, base + 1, base + uint16(c.BlockSize()) - 1} {
				if got, ok := d.Subscriber(a, p); !ok || got != sub {
					t.Fatalf("%v:%d looks up to %v %v, want %v", a, p, got, ok, sub)
				}
			}
		}
	}
	// 64 subscribers x 4 = 256 blocks of the 288: the last 32 are nobody's.
	a, base := c.BlockAt(uint32(c.NumBlocks() - 1))
	if got, ok := d.Subscriber(a, base); ok {
		t.Errorf("a block beyond the subscribers looks up to %v", got)
	}
	if _, ok := d.Subscriber(a, 80); ok {
		t.Error("a port below the blocks looks up to someone")
	}
	small := c
	small.PoolAddrs = 5
	if err := (Deterministic{Config: &small, Quota: 4}).Validate(); err == nil {
		t.Error("a pool too small for the subscribers was accepted")
	}
	if err := (Deterministic{Config: &c, Quota: 3}).Validate(); err != nil {
		t.Errorf("48 blocks an address in quotas of 3: %v", err)
	}
	odd := c
	odd.Blocks = 47
	if err := (Deterministic{Config: &odd, Quota: 4}).Validate(); err == nil {
		t.Error("quotas spanning two addresses were accepted")
	}
}
