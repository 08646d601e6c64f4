package natbehave

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// fakeNet is an in-memory UDP network with one NAT between its inside
// (addresses in inside: the prober's sockets) and its outside (the
// server's), mapping and filtering as a test picks. It checks the probe's
// reasoning against every combination with no kernel and no privilege;
// the lab tests (test/e2e/cgnat) run it across real NATs.
type fakeNet struct {
	inside    netip.Prefix
	public    netip.Addr
	nat       bool // false: no NAT at all, inside and outside routed
	mapping   Behaviour
	filtering Behaviour
	// dropFirst drops the first datagrams of each new mapping (a NAT
	// that waits for a port block before it forwards).
	dropFirst int

	mu    sync.Mutex
	conns map[netip.AddrPort]*fakeConn
	maps  map[[2]netip.AddrPort]*fakeMapping // inside source, remote (masked by mapping)
	back  map[netip.AddrPort]*fakeMapping    // public address:port
	next  uint16
}

type fakeMapping struct {
	inside, public netip.AddrPort
	perms          map[netip.AddrPort]bool // remotes (masked by filtering) let in
	sent           int
}

type datagram struct {
	b    []byte
	from netip.AddrPort
}

func newFakeNet(nat bool, mapping, filtering Behaviour) *fakeNet {
	return &fakeNet{inside: netip.MustParsePrefix("100.64.0.0/10"), public: netip.MustParseAddr("203.0.113.1"),
		nat: nat, mapping: mapping, filtering: filtering, conns: map[netip.AddrPort]*fakeConn{},
		maps: map[[2]netip.AddrPort]*fakeMapping{}, back: map[netip.AddrPort]*fakeMapping{}, next: 40000}
}

// mask keeps of a remote endpoint what a behaviour depends on.
func mask(b Behaviour, r netip.AddrPort) netip.AddrPort {
	switch b {
	case EndpointIndependent:
		return netip.AddrPort{}
	case AddressDependent:
		return netip.AddrPortFrom(r.Addr(), 0)
	}
	return r
}

func (n *fakeNet) listen(network, addr string) (net.PacketConn, error) {
	a, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if a.Port() == 0 {
		n.next++
		a = netip.AddrPortFrom(a.Addr(), 10000+n.next)
	}
	c := &fakeConn{n: n, local: a, in: make(chan datagram, 16), closed: make(chan struct{})}
	n.conns[a] = c
	return c, nil
}

// send carries b from src to dst through the NAT.
func (n *fakeNet) send(b []byte, src, dst netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nat && n.inside.Contains(src.Addr()) && !n.inside.Contains(dst.Addr()) {
		k := [2]netip.AddrPort{src, mask(n.mapping, dst)}
		m := n.maps[k]
		if m == nil {
			n.next++
			m = &fakeMapping{inside: src, public: netip.AddrPortFrom(n.public, n.next), perms: map[netip.AddrPort]bool{}}
			n.maps[k], n.back[m.public] = m, m
		}
		m.perms[mask(n.filtering, dst)] = true
		if m.sent++; m.sent <= n.dropFirst {
			return
		}
		src = m.public
	} else if n.nat && dst.Addr() == n.public {
		m := n.back[dst]
		if m == nil || !m.perms[mask(n.filtering, src)] {
			return
		}
		dst = m.inside
	}
	if c := n.conns[dst]; c != nil {
		select {
		case c.in <- datagram{append([]byte(nil), b...), src}:
		default:
		}
	}
}

// fakeConn is a socket of fakeNet.
type fakeConn struct {
	n      *fakeNet
	local  netip.AddrPort
	in     chan datagram
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	var timeout <-chan time.Time
	if !d.IsZero() {
		t := time.NewTimer(time.Until(d))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case g := <-c.in:
		return copy(b, g.b), net.UDPAddrFromAddrPort(g.from), nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-timeout:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *fakeConn) WriteTo(b []byte, to net.Addr) (int, error) {
	c.n.send(b, c.local, to.(*net.UDPAddr).AddrPort())
	return len(b), nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.n.mu.Lock()
		delete(c.n.conns, c.local)
		c.n.mu.Unlock()
	})
	return nil
}

func (c *fakeConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }
func (c *fakeConn) SetDeadline(t time.Time) error {
	return c.SetReadDeadline(t)
}
func (c *fakeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
