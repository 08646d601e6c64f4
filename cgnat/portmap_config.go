package cgnat

import (
	"net/netip"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/portmap"
)

// PortMapping is the cgnat section's port_mapping: PCP and NAT-PMP served
// to the subscribers on the subscribers' interface (portmap.go). Both are
// off unless switched on. UPnP IGD is not offered: its discovery is
// link-local multicast, which a subscriber's own router does not pass
// on, so only that router could ask, and it asks by PCP or NAT-PMP.
type PortMapping struct {
	PCP           bool   `yaml:"pcp"`            // PCP (RFC 6887) on UDP 5351
	NATPMP        bool   `yaml:"nat_pmp"`        // NAT-PMP (RFC 6886) on UDP 5351
	MinLifetime   string `yaml:"min_lifetime"`   // a shorter requested lifetime is raised to this; default 2m
	MaxLifetime   string `yaml:"max_lifetime"`   // a longer one is cut to this; default 24h
	PerSubscriber int    `yaml:"per_subscriber"` // mappings one subscriber holds at once; default 32
	Total         int    `yaml:"total"`          // mappings all subscribers hold at once; default 16384
}

// PortMap is a validated PortMapping.
type PortMap struct {
	PCP, NATPMP bool
	Policy      portmap.Policy
}

// On reports whether a protocol is served.
func (p PortMap) On() bool { return p.PCP || p.NATPMP }

// Bounds of the mapping counts: the pinned map of mappings is sized by
// total (40 bytes an entry, allocated as used).
const (
	DefaultPortMapTotal = 16384
	maxPortMapTotal     = 1 << 20
)

// parse validates p (field is its name) for subscribers of inside.
func (c PortMapping) parse(field string, inside netip.Prefix) (PortMap, error) {
	p := PortMap{PCP: c.PCP, NATPMP: c.NATPMP}
	if !p.On() {
		return p, nil
	}
	pol := &p.Policy
	if err := pol.ParseLifetimes(field, c.MinLifetime, c.MaxLifetime); err != nil {
		return p, err
	}
	pol.PerHost, pol.PerSite = c.PerSubscriber, c.Total
	if pol.PerSite == 0 {
		pol.PerSite = DefaultPortMapTotal
	}
	if pol.PerHost == 0 {
		pol.PerHost = min(portmap.DefaultPerHost, pol.PerSite)
	}
	if pol.PerSite < 1 || pol.PerSite > maxPortMapTotal {
		return p, config.Errorf(field+".total", "%d is not between 1 and %d", pol.PerSite, maxPortMapTotal)
	}
	if pol.PerHost < 1 || pol.PerHost > pol.PerSite {
		return p, config.Errorf(field+".per_subscriber", "%d is not between 1 and total (%d)", pol.PerHost, pol.PerSite)
	}
	// A subscriber maps its own address only, inside the prefix.
	pol.Allowed = []netip.Prefix{inside}
	pol.Ports = portmap.PortRange{First: 1, Last: 65535} // the blocks bound them
	return p, nil
}
