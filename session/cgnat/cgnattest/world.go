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
)

// Config is the world's CGNAT in a filtering mode. The modes use three
// block sizes, so each size runs through the same fixtures: 512 ports
// (endpoint-independent), 64 (address-dependent), 128 (address and port).
func Config(f cgnat.Filtering) cgnat.Config {
	bits := map[cgnat.Filtering]uint8{cgnat.EIF: 9, cgnat.ADF: 6, cgnat.APDF: 7}[f]
	return cgnat.Config{Inside: Inside, Gateway: Gateway, PoolFirst: Pub1, PoolAddrs: 2,
		PortLo: PortLo, BlockBits: bits, Blocks: (65536 - int(PortLo)) >> bits, Filter: f}
}

// Grants are the world's blocks: A the first of Pub1, B the first of
// Pub2; D is spent.
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
