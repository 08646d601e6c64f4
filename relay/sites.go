package relay

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session/ports"
)

// siteMap is what relay.yaml grants each site: its prefix and public
// IPv4, and the port set of a public IPv4 shared by port (A+P). It is
// set at start and never changes, so it needs no lock: the inbound gate
// reads it before any part's lock. So are the sites' shares of the
// inbound budget, whose state is atomic (inboundgate.go).
type siteMap struct {
	grants    map[string][]netip.Prefix // by site: its prefix and public IPv4
	ipv4Ports map[string]ports.Range    // by site whose public IPv4 is shared by port
	gates     map[string]*siteGate      // by site: its share of the inbound budget
}

// newSiteMap reads the sites' grants from the settings.
func newSiteMap(s *Settings) siteMap {
	m := siteMap{grants: map[string][]netip.Prefix{}, ipv4Ports: map[string]ports.Range{}, gates: map[string]*siteGate{}}
	for _, site := range s.Sites {
		m.gates[site.ID] = new(siteGate)
		if site.IPv4.IsValid() && site.IPv4Ports.Len() < 65535 {
			m.ipv4Ports[site.ID] = site.IPv4Ports // A+P: the address is shared by port
		}
		m.grants[site.ID] = append(m.grants[site.ID], site.Prefix)
		if site.IPv4.IsValid() {
			m.grants[site.ID] = append(m.grants[site.ID], netip.PrefixFrom(site.IPv4, 32))
		}
	}
	return m
}

// siteOf is the site a flow's site endpoint belongs to (by its port
// too, on a shared IPv4: holds).
func (m siteMap) siteOf(a netip.AddrPort) (string, bool) {
	for site, ps := range m.grants {
		for _, p := range ps {
			if m.holds(site, p, a) {
				return site, true
			}
		}
	}
	return "", false
}

// holds reports whether site's granted prefix pfx holds endpoint a. A
// public IPv4 may be shared by sites with disjoint port sets (A+P, RFC
// 6346: ipv4_ports): the address alone does not say whose a flow is, its
// port does (for ICMP, the echo identifier the key carries as a port).
func (m siteMap) holds(site string, pfx netip.Prefix, a netip.AddrPort) bool {
	if !pfx.Contains(a.Addr()) {
		return false
	}
	if r, ok := m.ipv4Ports[site]; ok && a.Addr().Is4() {
		return r.Contains(a.Port())
	}
	return true
}
