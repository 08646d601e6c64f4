package lab

import (
	"fmt"
	"time"
)

// CGNMode is how the upstream CGNAT picks the public port of a mapping.
type CGNMode int

const (
	// CGNPreserve is plain masquerade: the host's source port is kept
	// when free (endpoint-independent mapping).
	CGNPreserve CGNMode = iota
	// CGNRandom is masquerade random,fully-random: every mapping gets a
	// random port (address-and-port-dependent mapping), the harsh case.
	CGNRandom
)

func (m CGNMode) String() string {
	switch m {
	case CGNPreserve:
		return "preserve"
	case CGNRandom:
		return "random"
	}
	return fmt.Sprintf("CGNMode(%d)", int(m))
}

// ParseCGNMode reads "preserve" or "random".
func ParseCGNMode(s string) (CGNMode, error) {
	switch s {
	case "preserve":
		return CGNPreserve, nil
	case "random":
		return CGNRandom, nil
	}
	return 0, fmt.Errorf("cgn mode %q is not preserve or random", s)
}

// Options shape a lab. The zero value is a port-preserving CGN with the
// kernel's conntrack timeouts.
type Options struct {
	CGNMode CGNMode
	// CGNUDPTimeout sets the CGN's conntrack UDP timeouts, for one-way
	// and for two-way ("stream") flows alike, in whole seconds. Zero
	// keeps the kernel's defaults (30 s and 120 s).
	CGNUDPTimeout time.Duration
	// Native6 adds IPv6 on every link and routes the site's prefix to
	// the lan host natively, through no NAT and no agent (native6.go):
	// the baseline unmap is benchmarked against. The default topology
	// has no IPv6 on the CGN path.
	Native6 bool
}

// Validate reports the first option that cannot be built.
func (o Options) Validate() error {
	if o.CGNMode != CGNPreserve && o.CGNMode != CGNRandom {
		return fmt.Errorf("lab options: CGNMode: %v is not preserve or random", o.CGNMode)
	}
	if o.CGNUDPTimeout < 0 || o.CGNUDPTimeout%time.Second != 0 {
		return fmt.Errorf("lab options: CGNUDPTimeout: %v is not a whole, non-negative number of seconds", o.CGNUDPTimeout)
	}
	return nil
}
