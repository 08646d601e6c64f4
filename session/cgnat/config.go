package cgnat

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/unmap-dev/unmap/session/xlat"
)

// Filtering is how a mapping lets the Internet in (RFC 4787 REQ-8).
// Mapping is always endpoint-independent (REQ-1).
type Filtering uint8

const (
	// EIF: anyone may reach a mapping (the default; REQ-8's recommendation
	// for applications' sake).
	EIF Filtering = iota
	// ADF: only addresses the mapping sent to.
	ADF
	// APDF: only address:port pairs the mapping sent to.
	APDF
)

func (f Filtering) String() string {
	switch f {
	case EIF:
		return "endpoint-independent"
	case ADF:
		return "address-dependent"
	case APDF:
		return "address-and-port-dependent"
	}
	return fmt.Sprintf("filtering-%d", uint8(f))
}

// Block geometry bounds: blocks of 64 to 512 ports (a bitmap of up to
// eight 64-bit words per protocol), at most four per subscriber at once.
const (
	MinBlockBits = 6
	MaxBlockBits = 9
	SubBlocks    = 4
	Planes       = 3 // TCP, UDP, ICMP echo: three port spaces
)

// Config is the CGNAT's load-time configuration. The zero value is no
// CGNAT: the subscriber program passes everything and the Internet side
// is the carriers' alone.
type Config struct {
	// Inside is the subscribers' prefix; each address in it is one
	// subscriber. /8 to /32.
	Inside netip.Prefix
	// Gateway is the relay's address towards the subscribers: packets to
	// it pass to the relay's stack, and refusals come from it (from the
	// refused packet's destination if unset).
	Gateway netip.Addr
	// PoolFirst and PoolAddrs are the public addresses the subscribers'
	// blocks are on: PoolAddrs consecutive IPv4 addresses.
	PoolFirst netip.Addr
	PoolAddrs int
	// PortLo is the first block port on every pool address; the blocks
	// take Blocks << BlockBits ports from there.
	PortLo    uint16
	BlockBits uint8
	Blocks    int
	// Filter is the filtering mode.
	Filter Filtering
	// Warn is the ports taken in a block (per protocol) at which the
	// datapath asks the agent for the subscriber's next block; 0 means
	// three quarters of a block.
	Warn uint32
	// Inside6 is the IPv6-only subscribers' prefix (NAT64, RFC 6146),
	// /44 to /64; each /64 in it is one subscriber (nat64.go). Zero: no
	// NAT64.
	Inside6 netip.Prefix
	// Prefix64 is the NAT64 prefix IPv4 servers are reached at (RFC
	// 6052): a /96; zero is the well-known 64:ff9b::/96.
	Prefix64 netip.Prefix
	// MTU6 is the largest IPv6 packet NAT64 sends a subscriber (its
	// link's MTU), 1280 to 9000; 0 is 1500.
	MTU6 int
}

// Enabled reports whether c configures a CGNAT.
func (c *Config) Enabled() bool { return c.Inside.IsValid() }

// BlockSize is the ports of a block.
func (c *Config) BlockSize() int { return 1 << c.BlockBits }

// PerAddr is the block ports on each pool address.
func (c *Config) PerAddr() int { return c.Blocks << c.BlockBits }

// PoolPorts is the block ports of the whole pool, per protocol.
func (c *Config) PoolPorts() int { return c.PoolAddrs * c.PerAddr() }

// Subscribers is the addresses of the inside prefix.
func (c *Config) Subscribers() int { return 1 << (32 - c.Inside.Bits()) }

// AllSubscribers is every subscriber the datapath has a record for: the
// inside prefix's addresses, then the inside IPv6 prefix's /64s.
func (c *Config) AllSubscribers() int { return c.Subscribers() + c.Subscribers6() }

// WarnAt is Warn with its default applied.
func (c *Config) WarnAt() uint32 {
	if c.Warn != 0 {
		return c.Warn
	}
	return uint32(c.BlockSize()) * 3 / 4
}

// Validate checks c alone.
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	switch {
	case !c.Inside.Addr().Is4() || c.Inside.Bits() < 8:
		return fmt.Errorf("cgnat: inside prefix %v: want IPv4, /8 or longer", c.Inside)
	case c.Inside.Masked() != c.Inside:
		return fmt.Errorf("cgnat: inside prefix %v has host bits set", c.Inside)
	case c.Gateway.IsValid() && !c.Gateway.Is4():
		return fmt.Errorf("cgnat: gateway %v is not IPv4", c.Gateway)
	case !c.PoolFirst.Is4() || c.PoolAddrs < 1 || c.PoolAddrs > 1<<16:
		return fmt.Errorf("cgnat: pool %v + %d addresses: want IPv4, 1 to 65536", c.PoolFirst, c.PoolAddrs)
	case u32(c.PoolFirst)+uint32(c.PoolAddrs-1) < u32(c.PoolFirst):
		return fmt.Errorf("cgnat: pool %v + %d addresses wraps", c.PoolFirst, c.PoolAddrs)
	case c.BlockBits < MinBlockBits || c.BlockBits > MaxBlockBits:
		return fmt.Errorf("cgnat: block of %d ports: want 64 to 512, a power of two", 1<<c.BlockBits)
	case c.PortLo == 0 || c.Blocks < 1 || int(c.PortLo)+c.PerAddr()-1 > 65535:
		return fmt.Errorf("cgnat: %d blocks of %d ports from port %d do not fit in 1-65535", c.Blocks, c.BlockSize(), c.PortLo)
	case c.Filter > APDF:
		return fmt.Errorf("cgnat: filtering %d unknown", c.Filter)
	case c.Warn > uint32(c.BlockSize()):
		return fmt.Errorf("cgnat: warn at %d ports of a %d-port block", c.Warn, c.BlockSize())
	case c.inPool(c.Gateway):
		return fmt.Errorf("cgnat: gateway %v inside the pool", c.Gateway)
	case c.Inside.Contains(c.PoolFirst) || c.inPool(c.Inside.Addr()):
		return errors.New("cgnat: pool and inside prefix overlap")
	}
	return c.validate64()
}

// ValidateSplit checks that the pool's subscriber ports are given to no
// one else: not the carriers' (the carrier range on the carrier address)
// and not a site's public IPv4 (sites, as the relay's site prefixes).
// The errors name both sides.
func (c *Config) ValidateSplit(carriers xlat.Config, sites []netip.Prefix) error {
	if !c.Enabled() {
		return nil
	}
	if a := carriers.CarrierAddr; a.IsValid() && c.inPool(a) && carriers.PortHi != 0 {
		lo, hi := int(c.PortLo), int(c.PortLo)+c.PerAddr()-1
		if int(carriers.PortLo) <= hi && int(carriers.PortHi) >= lo {
			return fmt.Errorf("cgnat: carrier ports %d-%d on %v overlap the pool's block ports %d-%d", carriers.PortLo, carriers.PortHi, a, lo, hi)
		}
	}
	for _, p := range sites {
		if !p.Addr().Is4() {
			continue
		}
		first := u32(p.Masked().Addr())
		last := first | (1<<(32-p.Bits()) - 1)
		pf, pl := u32(c.PoolFirst), u32(c.PoolFirst)+uint32(c.PoolAddrs-1)
		if first <= pl && last >= pf {
			return fmt.Errorf("cgnat: site public IPv4 %v inside the pool %v-%v", p, c.PoolFirst, addr4(pl))
		}
	}
	return nil
}

// BlockID is the index of block n of pool address i (0-based).
func (c *Config) BlockID(i, n int) uint32 { return uint32(i*c.Blocks + n) }

// BlockAt is where block id is: its public address and first port.
func (c *Config) BlockAt(id uint32) (netip.Addr, uint16) {
	i, n := int(id)/c.Blocks, int(id)%c.Blocks
	return addr4(u32(c.PoolFirst) + uint32(i)), c.PortLo + uint16(n<<c.BlockBits)
}

// NumBlocks is the pool's blocks.
func (c *Config) NumBlocks() int { return c.PoolAddrs * c.Blocks }

func (c *Config) inside(a netip.Addr) bool { return a.Is4() && c.Inside.Contains(a) }

func (c *Config) inPool(a netip.Addr) bool {
	return c.Enabled() && a.Is4() && u32(a)-u32(c.PoolFirst) < uint32(c.PoolAddrs)
}

// PoolPort is the offset of a pool address:port in a protocol's plane
// of the inbound slots (address index x ports an address + port -
// PortLo), or false if it is no block port of the pool.
func (c *Config) PoolPort(a netip.Addr, port uint16) (int, bool) { return c.poolPort(a, port) }

// poolPort is a's port's offset in a plane of the slots, or false.
func (c *Config) poolPort(a netip.Addr, port uint16) (int, bool) {
	if !c.inPool(a) || port < c.PortLo || int(port-c.PortLo) >= c.PerAddr() {
		return 0, false
	}
	return int(u32(a)-u32(c.PoolFirst))*c.PerAddr() + int(port-c.PortLo), true
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
