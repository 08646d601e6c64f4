package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Lab is one built topology. Close tears it down; every method of its
// namespaces fails after that.
type Lab struct {
	// Prefix names the lab's namespaces: Prefix + "-" + role.
	Prefix  string
	Options Options

	ns    map[Role]*NS
	order []*NS // creation order, for teardown
	// peerXDP holds the pass programs' links on the agents' peers
	// (makeXDPReady), by namespace and veth.
	peerXDP map[peerEnd]link.Link
}

// New builds a lab: namespaces, veths, addresses, routes, forwarding and
// the two NATs. On failure everything built so far is torn down. ctx bounds
// the build; it does not bound the lab's life.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	// Best effort: a failure to clean up after a dead run must not stop
	// this one.
	_ = reapOrphans()
	prefix, err := claimPrefix()
	if err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix, Options: opts, ns: map[Role]*NS{}, peerXDP: map[peerEnd]link.Link{}}
	if err := l.build(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("build lab %s: %w", l.Prefix, err), l.Close())
	}
	return l, nil
}

// NS returns the namespace playing role r; it panics on a role the
// topology does not have, which is a bug in the caller.
func (l *Lab) NS(r Role) *NS {
	n, ok := l.ns[r]
	if !ok {
		panic(fmt.Sprintf("lab: no namespace %q", r))
	}
	return n
}

// Namespaces lists the lab's namespaces in build order.
func (l *Lab) Namespaces() []*NS { return append([]*NS(nil), l.order...) }

// Close tears the lab down: it closes what was opened in its namespaces,
// then removes them (which removes their veths). It is safe to call twice.
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.order) - 1; i >= 0; i-- {
		if err := l.order[i].close(); err != nil {
			errs = append(errs, err)
		}
	}
	l.order = nil
	if err := removeOwner(l.Prefix); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// claimPrefix picks a random prefix no lab uses, and claims it by
// creating its owner file.
func claimPrefix() (string, error) {
	for range 10 {
		var rnd [3]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return "", err
		}
		prefix := NamePrefix + hex.EncodeToString(rnd[:])
		if m, _ := filepath.Glob(filepath.Join(NetnsDir, prefix+"-*")); len(m) > 0 {
			continue // an unowned leftover holds it
		}
		err := writeOwner(prefix)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return prefix, err
	}
	return "", errors.New("no free lab prefix after 10 tries")
}

func (l *Lab) build(ctx context.Context) error {
	steps := []struct {
		name string
		do   func() error
	}{
		{"namespaces", l.makeNamespaces},
		{"wires", l.makeWires},
		{"xdp-peers", l.makeXDPReady},
		{"routes", l.makeRoutes},
		{"nat", l.makeNAT},
		{"native6", l.makeNative6},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if afterBuildStep != nil {
			if err := afterBuildStep(s.name); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	return nil
}

// afterBuildStep lets tests fail a build half way, to prove that a failed
// build leaves nothing behind.
var afterBuildStep func(step string) error

func (l *Lab) makeNamespaces() error {
	for _, r := range Roles {
		name := l.Prefix + "-" + string(r)
		if err := createNamed(name); err != nil {
			return err
		}
		n, err := openNS(r, name)
		if err != nil {
			_ = deleteNamed(name)
			return err
		}
		l.ns[r] = n
		l.order = append(l.order, n)
		if err := n.setup(); err != nil {
			return err
		}
	}
	return nil
}

// setup brings up loopback and sets the namespace's sysctls before any
// veth exists, so that every interface inherits them from "default".
func (n *NS) setup() error {
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("%s: lo: %w", n.Name, err)
	}
	if err := n.nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("%s: lo up: %w", n.Name, err)
	}
	s := []Sysctl{
		// Addresses usable at once: no duplicate address detection.
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}
	if f, ok := forwarders[n.Role]; ok {
		if f.v4 {
			s = append(s, Sysctl{"net.ipv4.ip_forward", "1"})
		}
		if f.v6 {
			s = append(s, Sysctl{"net.ipv6.conf.all.forwarding", "1"})
		}
	}
	return n.SetSysctls(s...)
}

func (l *Lab) makeWires() error {
	for _, w := range wires {
		a, b := l.ns[w.A], l.ns[w.B]
		mtu := w.MTU
		if mtu == 0 {
			mtu = MTU
		}
		veth := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: string(w.B), MTU: mtu},
			PeerName:  string(w.A),
			// The peer is created directly in b: neither end ever
			// exists in the root namespace.
			PeerNamespace: netlink.NsFd(b.handle),
		}
		if err := a.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth %s/%s—%s/%s: %w", a.Name, w.B, b.Name, w.A, err)
		}
		if err := a.configure(string(w.B), w.Net4, w.A4, w.Net6, w.A6); err != nil {
			return err
		}
		if err := errors.Join(a.wireLike(string(w.B)), b.wireLike(string(w.A))); err != nil {
			return err
		}
		if err := b.configure(string(w.A), w.Net4, w.B4, w.Net6, w.B6); err != nil {
			return err
		}
	}
	for _, h := range hostAddrs {
		if err := l.ns[h.In].AddAddr(string(h.Ifname), h.Addr); err != nil {
			return err
		}
	}
	return nil
}

// AddAddr adds address/length p to an interface of the namespace, usable
// at once (no duplicate address detection for IPv6).
func (n *NS) AddAddr(ifname string, p netip.Prefix) error {
	link, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name, ifname, err)
	}
	return n.addAddr(link, p)
}

func (n *NS) addAddr(link netlink.Link, p netip.Prefix) error {
	na := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		na.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(link, na); err != nil {
		return fmt.Errorf("%s: %s: address %s: %w", n.Name, link.Attrs().Name, p, err)
	}
	return nil
}

// configure gives one veth end its addresses and brings it up.
func (n *NS) configure(ifname string, net4 netip.Prefix, a4 netip.Addr, net6 netip.Prefix, a6 netip.Addr) error {
	link, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name, ifname, err)
	}
	for _, a := range []struct {
		net  netip.Prefix
		addr netip.Addr
	}{{net4, a4}, {net6, a6}} {
		if !a.addr.IsValid() {
			continue
		}
		if err := n.addAddr(link, netip.PrefixFrom(a.addr, a.net.Bits())); err != nil {
			return err
		}
	}
	if err := n.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: %s up: %w", n.Name, ifname, err)
	}
	return nil
}

func (l *Lab) makeRoutes() error {
	for _, r := range routes {
		n := l.ns[r.In]
		nr := &netlink.Route{Dst: ipNet(r.Dst)}
		if r.Via.IsValid() {
			nr.Gw = r.Via.AsSlice()
		} else {
			nr.Type = unix.RTN_UNREACHABLE
		}
		if err := n.routeAdd(nr); err != nil {
			return fmt.Errorf("%s: route %s via %s: %w", n.Name, r.Dst, r.Via, err)
		}
	}
	return nil
}

// routeAdd adds nr, waiting up to 5 s for its IPv6 gateway to be on-link:
// the kernel adds an IPv6 address's prefix route only once the veth's
// carrier is up, which its link watcher reports a moment after both ends
// are set up (longer on a loaded machine), and until then a route via a
// gateway in that prefix fails with EHOSTUNREACH.
func (n *NS) routeAdd(nr *netlink.Route) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := n.nl.RouteAdd(nr)
		if !errors.Is(err, unix.EHOSTUNREACH) || nr.Gw.To4() != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *Lab) makeNAT() error {
	// The home router's NAT: the LAN leaves the edge as its WAN address.
	if err := l.ns[Edge].masquerade(LANNet, string(CGN), false); err != nil {
		return err
	}
	cgn := l.ns[CGN]
	if err := cgn.masquerade(CGNInside, string(Inet), l.Options.CGNMode == CGNRandom); err != nil {
		return err
	}
	if t := l.Options.CGNUDPTimeout; t > 0 {
		// conntrack exists in cgn now that its NAT chain is in place.
		secs := strconv.Itoa(int(t / time.Second))
		return cgn.SetSysctls(
			Sysctl{"net.netfilter.nf_conntrack_udp_timeout", secs},
			Sysctl{"net.netfilter.nf_conntrack_udp_timeout_stream", secs},
		)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
