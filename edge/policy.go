package edge

import (
	"net/netip"
	"sync/atomic"

	"github.com/unmap-dev/unmap/session"
)

// Refusal names why the site refused an inbound flow.
type Refusal uint8

// Reasons an inbound flow is refused; each is counted.
const (
	Accepted      Refusal = iota
	NotOurAddress         // the flow is for an address the site was not granted
	NoRule                // no allow rule or port forward matches
	numRefusals
)

var refusalNames = [numRefusals]string{"accepted", "not-our-address", "no-rule"}

func (r Refusal) String() string { return refusalNames[r] }

// Policy decides which inbound flows the site accepts: IPv6 (or IPv4) to
// hosts an allow rule names, and flows to ports of the site's public IPv4
// that a forward sends on to a LAN host. Everything else is refused. It is
// safe for concurrent use.
type Policy struct {
	allow    []Allow
	forwards []Forward
	counts   [numRefusals]atomic.Uint64
	// dynamic, when set, is asked after the static rules: the LAN
	// hosts' port mappings (portmap.go). Set before the first offer.
	dynamic func(session.Flow) (netip.AddrPort, bool)
}

// NewPolicy takes the parsed rules of edge.yaml.
func NewPolicy(allow []Allow, forwards []Forward) *Policy {
	return &Policy{allow: allow, forwards: forwards}
}

// Decide judges an inbound flow. prefix and public are what the relay
// granted the site (public is invalid if none). For a forward, to is the
// LAN host address and port the flow goes to; otherwise to is f.Site.
func (p *Policy) Decide(f session.Flow, prefix netip.Prefix, public netip.Addr) (to netip.AddrPort, why Refusal) {
	defer func() { p.counts[why].Add(1) }()
	dst := f.Site.Addr()
	switch {
	case public.IsValid() && dst == public:
		if f.Proto != session.TCP && f.Proto != session.UDP {
			return netip.AddrPort{}, NoRule
		}
		for _, fw := range p.forwards {
			if fw.Proto == f.Proto && fw.Ports.Contains(f.Site.Port()) {
				port := fw.To.Port() + (f.Site.Port() - fw.Ports.First)
				return netip.AddrPortFrom(fw.To.Addr(), port), Accepted
			}
		}
		return p.byMapping(f)
	case !prefix.Contains(dst):
		return netip.AddrPort{}, NotOurAddress
	}
	for _, a := range p.allow {
		if a.matches(f) {
			return f.Site, Accepted
		}
	}
	return p.byMapping(f)
}

// byMapping accepts a flow a LAN host's port mapping asked for.
func (p *Policy) byMapping(f session.Flow) (netip.AddrPort, Refusal) {
	if p.dynamic != nil {
		if to, ok := p.dynamic(f); ok {
			return to, Accepted
		}
	}
	return netip.AddrPort{}, NoRule
}

func (a Allow) matches(f session.Flow) bool {
	if !a.Hosts.Contains(f.Site.Addr()) {
		return false
	}
	switch a.Proto {
	case 0:
		return true
	case session.ICMPv6:
		return f.Proto == session.ICMPv6 || f.Proto == session.ICMP
	case f.Proto:
		return a.Ports.Contains(f.Site.Port())
	}
	return false
}

// Counts returns how many inbound flows were accepted and refused, by
// reason name.
func (p *Policy) Counts() map[string]uint64 {
	m := make(map[string]uint64, numRefusals)
	for r := range numRefusals {
		m[r.String()] = p.counts[r].Load()
	}
	return m
}
