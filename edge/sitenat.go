package edge

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
)

// siteNAT is the site's IPv4 NAPT: LAN hosts' private endpoints on ports
// of the site's public IPv4, which the relay grants. The relay only ever
// sees the public side; the edge's datapath entries use the private one.
//
// Mapping is endpoint-independent (RFC 4787 REQ-1): every flow from one
// private endpoint uses the same public port, whatever its remote, while
// any of them lives; the port is the private one when that is free (port
// preservation), so a host that binds a well-known source port keeps it.
// Forwarded ports are never handed out for outbound flows.
type siteNAT struct {
	mu     sync.Mutex
	public netip.Addr // invalid: no public IPv4 granted
	ports  *ports.Edge
	binds  map[natKey]*natBind
	flows  map[session.Flow]natFlow      // by the flow as announced (public side)
	fwd    map[session.Flow]session.Flow // inbound forwards: the announced flow by the LAN's view
	// mapped is the public port of each private endpoint a LAN host's
	// port mapping holds (portmap.go): its outbound flows leave from it.
	mapped map[natKey]uint16
}

type natKey struct {
	proto session.Proto
	ep    netip.AddrPort
}

type natBind struct {
	port   uint16
	refs   int
	mapped bool // the port is a port mapping's: the mapping, not the binding, gives it back
}

// natFlow is the private endpoint of one announced flow; bound says it
// holds a reference on an outbound binding (an inbound forward holds none).
type natFlow struct {
	private netip.AddrPort
	bound   bool
}

func newSiteNAT() *siteNAT {
	return &siteNAT{binds: map[natKey]*natBind{}, flows: map[session.Flow]natFlow{}, fwd: map[session.Flow]session.Flow{}, mapped: map[natKey]uint16{}}
}

// grant sets the public IPv4 and its port set (zero: the whole address)
// from the relay's grant, keeping the forwarded ports out of the pool. A
// grant of the same address changes nothing; a different one starts
// afresh (the relay refuses the old address's flows on replay).
func (n *siteNAT) grant(public netip.Addr, r ports.Range, forwards []Forward) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if public == n.public && n.ports != nil {
		return nil
	}
	// Flows a restarted agent restored (restore) keep their ports when the
	// grant is for the same address.
	keep := public == n.public
	n.public, n.ports = public, nil
	if !keep {
		clear(n.binds)
		clear(n.flows)
		clear(n.fwd)
		clear(n.mapped)
	}
	if !public.IsValid() {
		return nil
	}
	if r == (ports.Range{}) {
		r = ports.Range{First: 1, Last: 65535}
	}
	p, err := ports.NewEdge(ports.EdgeConfig{Ports: r, Quarantine: -1})
	if err != nil {
		return fmt.Errorf("public IPv4 ports %v: %w", r, err)
	}
	for _, fw := range forwards {
		for port := int(fw.Ports.First); port <= int(fw.Ports.Last); port++ {
			if r.Contains(uint16(port)) {
				_ = p.Claim(fw.Proto, uint16(port))
			}
		}
	}
	for k, b := range n.binds {
		_ = p.Claim(k.proto, b.port)
	}
	n.ports = p
	return nil
}

// restore puts back a flow of the public IPv4 that a restarted agent
// found in the datapath: f as announced, private the LAN host's endpoint,
// forward whether it came in by a port forward. The public address is
// taken as granted until the next grant confirms it (or starts afresh).
func (n *siteNAT) restore(f session.Flow, private netip.AddrPort, forward bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.public.IsValid() {
		n.public = f.Site.Addr()
	}
	if f.Site.Addr() != n.public {
		return
	}
	if _, dup := n.flows[f]; dup {
		return
	}
	if forward {
		n.flows[f] = natFlow{private: private}
		lan := f
		lan.Site = private
		n.fwd[lan] = f
		return
	}
	k := natKey{f.Proto, private}
	b := n.binds[k]
	if b == nil {
		b = &natBind{port: f.Site.Port()}
		n.binds[k] = b
	}
	b.refs++
	n.flows[f] = natFlow{private: private, bound: true}
}

// isForward reports whether f came in by a port forward.
func (n *siteNAT) isForward(f session.Flow) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	nf, ok := n.flows[f]
	return ok && !nf.bound
}

// Public is the granted public IPv4, invalid if none.
func (n *siteNAT) Public() netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.public
}

// outbound maps a LAN host's flow (private source) to the flow the relay
// is told of (public source).
func (n *siteNAT) outbound(lan session.Flow) (session.Flow, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ports == nil {
		return lan, fmt.Errorf("no public IPv4 granted")
	}
	k := natKey{lan.Proto, lan.Site}
	b := n.binds[k]
	if port, ok := n.mapped[k]; ok && b == nil {
		// The host mapped this endpoint: its outbound flows leave from
		// the mapped port, as a PCP or UPnP client expects.
		b = &natBind{port: port, mapped: true}
		n.binds[k] = b
	}
	if b == nil {
		port := lan.Site.Port()
		if err := n.ports.Claim(lan.Proto, port); err != nil {
			if port, err = n.ports.Grant(lan.Proto); err != nil {
				return lan, fmt.Errorf("public IPv4 port: %w", err)
			}
		}
		b = &natBind{port: port}
		n.binds[k] = b
	}
	f := lan
	f.Site = netip.AddrPortFrom(n.public, b.port)
	if _, dup := n.flows[f]; !dup {
		b.refs++
		n.flows[f] = natFlow{private: lan.Site, bound: true}
	}
	return f, nil
}

// inbound records the LAN endpoint a forwarded flow goes to.
func (n *siteNAT) inbound(f session.Flow, to netip.AddrPort) session.Flow {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flows[f] = natFlow{private: to}
	lan := f
	lan.Site = to
	n.fwd[lan] = f
	return lan
}

// forwarded is the announced flow of a LAN host's packet that answers an
// inbound forward, if it is one.
func (n *siteNAT) forwarded(lan session.Flow) (session.Flow, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f, ok := n.fwd[lan]
	return f, ok
}

// lan is the flow as the LAN host sees it: f itself unless f is one of
// the public IPv4's flows.
func (n *siteNAT) lan(f session.Flow) session.Flow {
	if f.Site.Addr().Is6() {
		return f
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if nf, ok := n.flows[f]; ok {
		f.Site = nf.private
	}
	return f
}

// release forgets a flow, and its public port with the last flow of its
// binding.
func (n *siteNAT) release(f session.Flow) {
	if f.Site.Addr().Is6() {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	nf, ok := n.flows[f]
	if !ok {
		return
	}
	delete(n.flows, f)
	if !nf.bound {
		lan := f
		lan.Site = nf.private
		delete(n.fwd, lan)
		return
	}
	k := natKey{f.Proto, nf.private}
	if b := n.binds[k]; b != nil {
		if b.refs--; b.refs == 0 {
			delete(n.binds, k)
			if !b.mapped {
				_ = n.ports.Release(f.Proto, b.port)
			}
		}
	}
}

// stats is the site NAT's part of `unmap status`.
func (n *siteNAT) stats() map[string]any {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.public.IsValid() {
		return map[string]any{"public": "none granted"}
	}
	return map[string]any{"public": n.public.String(), "bindings": len(n.binds), "flows": len(n.flows)}
}

// claimMapped takes a port of the public IPv4 for a mapping of the
// private endpoint in; the endpoint's next outbound binding uses it. A
// binding of that endpoint that holds the port already (a restarted
// agent's restored flows) hands it over to the mapping.
func (n *siteNAT) claimMapped(proto session.Proto, ext, in netip.AddrPort) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ports == nil || ext.Addr() != n.public {
		return fmt.Errorf("%v is not on the granted public IPv4", ext)
	}
	k := natKey{proto, in}
	if b := n.binds[k]; b != nil && b.port == ext.Port() {
		b.mapped = true
	} else if err := n.ports.Claim(proto, ext.Port()); err != nil {
		return err
	}
	n.mapped[k] = ext.Port()
	return nil
}

// releaseMapped gives a mapping's port back, if it is still of the
// granted address (a new grant starts a fresh pool); while an outbound
// binding still uses it, that binding gives it back when it ends.
func (n *siteNAT) releaseMapped(proto session.Proto, ext, in netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ports == nil || ext.Addr() != n.public {
		return
	}
	k := natKey{proto, in}
	if n.mapped[k] == ext.Port() {
		delete(n.mapped, k)
	}
	if b := n.binds[k]; b != nil && b.mapped && b.port == ext.Port() {
		b.mapped = false
		return
	}
	_ = n.ports.Release(proto, ext.Port())
}

// external is the granted public IPv4 and its port range, invalid and
// zero if none (a port mapping's external side: portmap.go).
func (n *siteNAT) external() (netip.Addr, ports.Range) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.public.IsValid() || n.ports == nil {
		return netip.Addr{}, ports.Range{}
	}
	return n.public, n.ports.Range()
}
