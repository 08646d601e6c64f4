// Package cgnattest builds the CGNAT's test world, its fixtures and
// random packets, for the model's tests and the datapath's differential
// tests (xdp/cgnat_test.go).
package cgnattest

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// The CGNAT world, beside xlattest's carriers: subscribers in
// 100.64.0.0/24 behind the relay, whose pool is the relay's carrier
// address (its carrier ports 20000-39999 stay the carriers': the blocks
// start at 40960) and the next address.
var (
	Inside  = netip.MustParsePrefix("100.64.0.0/24")
	Gateway = netip.MustParseAddr("100.64.0.1")
	SubA    = netip.MustParseAddr("100.64.0.10") // holds a block on Pub1
	SubB    = netip.MustParseAddr("100.64.0.11") // holds a block on Pub2
	SubC    = netip.MustParseAddr("100.64.0.12") // holds none: its first packet goes to the agent
	SubD    = netip.MustParseAddr("100.64.0.13") // holds none and is spent: refused
	Spoofed = netip.MustParseAddr("10.9.9.9")    // no subscriber

	Pub1 = xlattest.RelayAddr                   // 203.0.113.1, also the carrier address
	Pub2 = netip.MustParseAddr("203.0.113.2")   // the pool's second address
	R4   = xlattest.Remote4                     // 203.0.113.99
	R4b  = netip.MustParseAddr("198.51.100.99") // another remote A talks to
	R4c  = netip.MustParseAddr("198.51.100.98") // a remote nobody talked to
	Rtr  = netip.MustParseAddr("198.51.100.1")  // a router on the way

	PortLo uint16 = 40960

	// NAT64: IPv6-only subscribers in 2001:db8:600::/56, each /64 one
	// subscriber. A6 and A6b share A6's /64 (its block: the second of
	// Pub1); C6's /64 holds none; D6's is spent.
	Inside6  = netip.MustParsePrefix("2001:db8:600::/56")
	A6       = netip.MustParseAddr("2001:db8:600:1::10")
	A6b      = netip.MustParseAddr("2001:db8:600:1::11")
	C6       = netip.MustParseAddr("2001:db8:600:2::5")
	D6       = netip.MustParseAddr("2001:db8:600:3::5")
	Spoofed6 = netip.MustParseAddr("2001:db8:999::1")
	// NSP is the network-specific NAT64 prefix of the address-dependent
	// mode (the others use the well-known 64:ff9b::/96).
	NSP = netip.MustParsePrefix("2001:db8:64:ff::/96")
)

// Sub6 is the subscriber (its /64) of IPv6 address a.
func Sub6(a netip.Addr) netip.Addr { p, _ := a.Prefix(64); return p.Addr() }

// Config is the world's CGNAT in a filtering mode. The modes use three
// block sizes, so each size runs through the same fixtures: 512 ports
// (endpoint-independent), 64 (address-dependent), 128 (address and port).
func Config(f cgnat.Filtering) cgnat.Config {
	bits := map[cgnat.Filtering]uint8{cgnat.EIF: 9, cgnat.ADF: 6, cgnat.APDF: 7}[f]
	c := cgnat.Config{Inside: Inside, Gateway: Gateway, PoolFirst: Pub1, PoolAddrs: 2,
		PortLo: PortLo, BlockBits: bits, Blocks: (65536 - int(PortLo)) >> bits, Filter: f, Inside6: Inside6}
	if f == cgnat.ADF {
		c.Prefix64 = NSP
	}
	return c
}

// Grants are the world's blocks: A the first of Pub1, B the first of
// Pub2, A6's /64 the second of Pub1; D and D6's /64 are spent.
type Grants struct {
	Grant func(sub netip.Addr, id uint32) error
	Spent func(sub netip.Addr) error
}

// Setup grants the world's blocks through g (the model's State, the
// datapath, or both).
func Setup(c *cgnat.Config, g Grants) error {
	if err := g.Grant(SubA, c.BlockID(0, 0)); err != nil {
		return err
	}
	if err := g.Grant(SubB, c.BlockID(1, 0)); err != nil {
		return err
	}
	if err := g.Grant(Sub6(A6), c.BlockID(0, 1)); err != nil {
		return err
	}
	if err := g.Spent(Sub6(D6)); err != nil {
		return err
	}
	return g.Spent(SubD)
}

// ModelGrants are g for a model State.
func ModelGrants(c *cgnat.Config, s *cgnat.State) Grants {
	return Grants{
		Grant: func(sub netip.Addr, id uint32) error { return s.Grant(c, sub, id) },
		Spent: func(sub netip.Addr) error {
			u := s.Subs[sub]
			if u == nil {
				u = &cgnat.Subscriber{}
				s.Subs[sub] = u
			}
			u.Spent = true
			return nil
		},
	}
}
