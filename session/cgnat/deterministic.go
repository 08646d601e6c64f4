package cgnat

import (
	"fmt"
	"net/netip"
)

// Deterministic is the deterministic mode (RFC 7422): subscriber i of the
// inside prefix holds blocks i x Quota ... i x Quota + Quota - 1 of the
// pool, computed, never granted nor returned, so no block needs a log
// record: who held a public address:port at any time is arithmetic
// (Subscriber). The datapath does not change: each subscriber's record
// is written once with its blocks and marked spent, so a subscriber past
// its blocks is refused at once (xdp.Datapath.GrantBlock, SetSpent).
// Blocks are numbered address by address, so a subscriber's blocks are on
// one address (paired) when Blocks is a multiple of Quota.
type Deterministic struct {
	Config *Config
	Quota  int // blocks a subscriber holds, 1 to SubBlocks
}

// Validate checks that every subscriber of the inside prefix has its
// blocks in the pool, on one address.
func (d Deterministic) Validate() error {
	c := d.Config
	if err := c.Validate(); err != nil {
		return err
	}
	if !c.Enabled() {
		return fmt.Errorf("cgnat: deterministic mode needs a pool")
	}
	if c.NAT64() {
		return fmt.Errorf("cgnat: deterministic mode covers IPv4 subscribers only: no NAT64 (inside IPv6 prefix %v)", c.Inside6)
	}
	if d.Quota < 1 || d.Quota > SubBlocks {
		return fmt.Errorf("cgnat: deterministic quota of %d blocks: want 1 to %d", d.Quota, SubBlocks)
	}
	if c.Blocks%d.Quota != 0 {
		return fmt.Errorf("cgnat: %d blocks an address do not divide into quotas of %d: a subscriber's blocks would span two addresses", c.Blocks, d.Quota)
	}
	if need := c.Subscribers() * d.Quota; need > c.NumBlocks() {
		return fmt.Errorf("cgnat: deterministic mode: %d subscribers x %d blocks need %d blocks, the pool has %d (%d addresses x %d)",
			c.Subscribers(), d.Quota, need, c.NumBlocks(), c.PoolAddrs, c.Blocks)
	}
	return nil
}

// Blocks is the blocks subscriber sub holds, in the order the datapath
// tries them.
func (d Deterministic) Blocks(sub netip.Addr) ([]uint32, error) {
	if !d.Config.inside(sub) {
		return nil, fmt.Errorf("cgnat: %v is not a subscriber", sub)
	}
	i := int(u32(sub) - u32(d.Config.Inside.Addr()))
	ids := make([]uint32, d.Quota)
	for j := range ids {
		ids[j] = uint32(i*d.Quota + j)
	}
	return ids, nil
}

// Subscriber is who holds public address a, port: the answer of `unmap
// relay lookup` in deterministic mode, at any time.
func (d Deterministic) Subscriber(a netip.Addr, port uint16) (netip.Addr, bool) {
	c := d.Config
	off, ok := c.poolPort(a, port)
	if !ok {
		return netip.Addr{}, false
	}
	i := (off >> c.BlockBits) / d.Quota
	if i >= c.Subscribers() {
		return netip.Addr{}, false // a block no subscriber has
	}
	return addr4(u32(c.Inside.Addr()) + uint32(i)), true
}
