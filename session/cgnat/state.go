package cgnat

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// TCP state bits of a mapping (In.TCP; cg_in.tcp in xdp/bpf/types.h), ORed
// in from the segments translated; an outbound SYN starts them again. The
// agent reads them for RFC 5382's idle timeouts: established (2 h 4 min)
// once both sides sent a SYN and neither a FIN or RST, transitory (4 min)
// otherwise.
const (
	TCPSynOut uint8 = 1 << 0
	TCPSynIn  uint8 = 1 << 1
	TCPFinOut uint8 = 1 << 2
	TCPFinIn  uint8 = 1 << 3
	TCPRst    uint8 = 1 << 4
)

// Key is a mapping's outbound key: the subscriber's address, its port
// (or echo identifier) and the protocol (6, 17 or 1).
type Key struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

// Out is a mapping as the outbound side holds it.
type Out struct {
	Addr  netip.Addr // public address
	Port  uint16     // public port
	Epoch uint16     // State.Epoch when an outbound packet last used it
}

// In is a mapping's inbound slot.
type In struct {
	Addr     netip.Addr // subscriber address
	Port     uint16     // subscriber port
	TCP      uint8      // TCP* bits
	Explicit bool       // asked for by PCP or NAT-PMP: any remote may reach it (explicit.go)
}

// Slot is where an inbound slot is: its protocol plane (0 TCP, 1 UDP,
// 2 ICMP) and offset in the pool's block ports.
type Slot struct {
	Plane int
	Off   int
}

// Perm is a filter's permission: the mapping pub:PPort sent to
// RAddr:RPort (RPort 0 with address-dependent filtering). Its value in
// State.Perms is the inside end the mapping had then (InsideOf).
type Perm struct {
	Pub   netip.Addr
	PPort uint16
	Proto uint8
	RAddr netip.Addr
	RPort uint16
}

// Block is a port block the agent granted: which ports are taken.
type Block struct {
	Addr netip.Addr
	Base uint16
	Bits [Planes][8]uint64
	Used [Planes]uint32
	Hint [Planes]uint32
}

// Subscriber is one inside address: its blocks, in the order they are tried, and
// whether the agent said to refuse once they are full (quota or pool
// spent) rather than ask it for another.
type Subscriber struct {
	Blocks []uint32
	Spent  bool
}

// Event is what the datapath tells the agent: a block reached the warn
// level (Config.Warn) in one protocol.
type Event struct {
	Sub   netip.Addr
	Block uint32
	Used  uint32
	Plane int
}

// State is the CGNAT's maps.
type State struct {
	Subs   map[netip.Addr]*Subscriber
	Blocks map[uint32]*Block
	Out    map[Key]Out
	In     map[Slot]In
	Perms  map[Perm]netip.AddrPort
	Events []Event
	// Epoch is the agent's sweep epoch (sw_cg_epoch): outbound packets
	// stamp it on their mapping, so a mapping whose epoch is old is idle.
	Epoch uint16
}

// NewState is an empty CGNAT: no subscriber holds a block.
func NewState() *State {
	return &State{Subs: map[netip.Addr]*Subscriber{}, Blocks: map[uint32]*Block{}, Out: map[Key]Out{},
		In: map[Slot]In{}, Perms: map[Perm]netip.AddrPort{}}
}

// Grant gives block id to subscriber sub, behind the blocks it holds.
func (s *State) Grant(c *Config, sub netip.Addr, id uint32) error {
	if int(id) >= c.NumBlocks() {
		return fmt.Errorf("cgnat: block %d outside the pool's %d", id, c.NumBlocks())
	}
	if !c.isSub(sub) {
		return fmt.Errorf("cgnat: %v is not a subscriber", sub)
	}
	u := s.Subs[sub]
	if u == nil {
		u = &Subscriber{}
		s.Subs[sub] = u
	}
	if len(u.Blocks) >= SubBlocks {
		return fmt.Errorf("cgnat: %v holds %d blocks already", sub, len(u.Blocks))
	}
	a, base := c.BlockAt(id)
	s.Blocks[id] = &Block{Addr: a, Base: base}
	u.Blocks = append(u.Blocks, id)
	return nil
}

// plane is a protocol's port space, or -1.
func plane(proto uint8) int {
	switch proto {
	case 6:
		return 0
	case 17:
		return 1
	case 1:
		return 2
	}
	return -1
}

// Plane is a protocol's port space (0 TCP, 1 UDP, 2 ICMP), or -1; a
// NAT64 mapping's key holds the IPv4 protocol it maps to.
func Plane(proto uint8) int { return plane(proto) }

// take claims the first free port at or after the block's hint, cyclically
// (cg_take): its offset in the block, or false.
func (b *Block) take(c *Config, pl int) (int, bool) {
	size := uint32(c.BlockSize())
	nw := size >> 6
	start := b.Hint[pl] & (size - 1)
	sw, sb := start>>6, start&63
	for i := uint32(0); i <= nw; i++ {
		wi := (sw + i) & (nw - 1)
		mask := ^uint64(0)
		switch {
		case i == 0:
			mask <<= sb
		case i == nw && sb != 0:
			mask = 1<<sb - 1
		case i == nw:
			mask = 0
		}
		free := ^b.Bits[pl][wi] & mask
		if free == 0 {
			continue
		}
		bit := free & -free
		b.Bits[pl][wi] |= bit
		pos := wi*64 + uint32(bits.TrailingZeros64(bit))
		b.Hint[pl] = pos + 1
		return int(pos), true
	}
	return 0, false
}

func (b *Block) give(pl, pos int) {
	b.Bits[pl][pos>>6] &^= 1 << (pos & 63)
	b.Used[pl]--
}

// Release ends mapping k, as the agent's expiry does
// (xdp.Datapath.ReleaseMapping): the mapping, its inbound slot, and its
// port back to its block.
func (s *State) Release(c *Config, k Key) error {
	o, ok := s.Out[k]
	if !ok {
		return fmt.Errorf("cgnat: no mapping %+v", k)
	}
	off, ok := c.poolPort(o.Addr, o.Port)
	if !ok {
		return fmt.Errorf("cgnat: mapping %+v outside the pool", k)
	}
	pl := plane(k.Proto)
	delete(s.Out, k)
	delete(s.In, Slot{pl, off})
	id, pos := uint32(off>>c.BlockBits), off&(c.BlockSize()-1)
	if b := s.Blocks[id]; b != nil {
		b.give(pl, pos)
	}
	return nil
}
