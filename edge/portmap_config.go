package edge

import (
	"fmt"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/portmap"
)

// PortMapping is edge.yaml's port_mapping: PCP, NAT-PMP and UPnP IGD
// served on the LAN interface (package portmap). Every protocol is off
// unless switched on: a mapping service is an attack surface, and a LAN
// that does not need one should not have one.
type PortMapping struct {
	PCP         bool     `yaml:"pcp"`          // PCP (RFC 6887) on UDP 5351
	NATPMP      bool     `yaml:"nat_pmp"`      // NAT-PMP (RFC 6886) on UDP 5351
	UPnP        bool     `yaml:"upnp"`         // UPnP IGD v1 and v2: SSDP on UDP 1900, SOAP on upnp_port
	UPnPPort    uint16   `yaml:"upnp_port"`    // TCP port of the UPnP description and control; default 5000
	MinLifetime string   `yaml:"min_lifetime"` // a shorter requested lifetime is raised to this; default 2m
	MaxLifetime string   `yaml:"max_lifetime"` // a longer one (or UPnP's "permanent" 0) is cut to this; default 24h
	PerHost     int      `yaml:"per_host"`     // mappings one LAN host may hold; default 32
	PerSite     int      `yaml:"per_site"`     // mappings the site holds at once; default 256
	ThirdParty  bool     `yaml:"third_party"`  // a host may map another host's address; default false
	Allowed     []string `yaml:"allowed"`      // internal addresses mappings may point at (prefixes); default any LAN host
	Ports       string   `yaml:"ports"`        // public IPv4 ports mappings may take; default 1024-65535
}

// PortMap is a validated PortMapping.
type PortMap struct {
	PCP, NATPMP, UPnP bool
	UPnPPort          uint16
	Policy            portmap.Policy
}

// On reports whether any protocol is served.
func (p PortMap) On() bool { return p.PCP || p.NATPMP || p.UPnP }

// maxPortMappings bounds per_site: each mapping is a port of the public
// IPv4 or a pinhole, and the table is scanned for UPnP's list.
const maxPortMappings = 4096

func (c PortMapping) parse(field string) (PortMap, error) {
	p := PortMap{PCP: c.PCP, NATPMP: c.NATPMP, UPnP: c.UPnP, UPnPPort: c.UPnPPort}
	if p.UPnPPort == 0 {
		p.UPnPPort = portmap.DefaultHTTPPort
	}
	pol := &p.Policy
	if err := pol.ParseLifetimes(field, c.MinLifetime, c.MaxLifetime); err != nil {
		return p, err
	}
	pol.PerHost, pol.PerSite = c.PerHost, c.PerSite
	if pol.PerSite == 0 {
		pol.PerSite = portmap.DefaultPerSite
	}
	if pol.PerHost == 0 {
		pol.PerHost = min(portmap.DefaultPerHost, pol.PerSite)
	}
	if pol.PerSite < 1 || pol.PerSite > maxPortMappings {
		return p, config.Errorf(field+".per_site", "%d is not between 1 and %d", pol.PerSite, maxPortMappings)
	}
	if pol.PerHost < 1 || pol.PerHost > pol.PerSite {
		return p, config.Errorf(field+".per_host", "%d is not between 1 and per_site (%d)", pol.PerHost, pol.PerSite)
	}
	pol.ThirdParty = c.ThirdParty
	for i, s := range c.Allowed {
		pr, err := parseHosts(fmt.Sprintf("%s.allowed[%d]", field, i), s)
		if err != nil {
			return p, err
		}
		pol.Allowed = append(pol.Allowed, pr)
	}
	pol.Ports = portmap.PortRange{First: 1024, Last: 65535}
	if c.Ports != "" {
		r, err := config.ParsePortRange(field+".ports", c.Ports)
		if err != nil {
			return p, err
		}
		pol.Ports = portmap.PortRange{First: r.First, Last: r.Last}
	}
	return p, nil
}
