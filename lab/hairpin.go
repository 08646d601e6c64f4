package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Hairpinning across the relay's CGNAT (RFC 4787 REQ-9, RFC 5382 REQ-8):
// two subscribers of the sub host, a and b, each with a mapping made by
// an exchange with srv4's echo server; one reaches the other through the
// other's public address:port and must be seen from its own public
// address:port, never its inside one. Both are on the sub host, so only
// the relay can turn their packets round: the host routes pool addresses
// to the relay, and the relay's kernel has no NAT rule for them.

// Hairpin is what a hairpin exchange saw: each subscriber's public
// address:port (as srv4 saw it), and where each end saw the other's
// packets come from.
type Hairpin struct {
	PubA, PubB       netip.AddrPort
	SeenAtA, SeenAtB netip.AddrPort
}

// Check reports an error unless each end saw the other from its public
// address:port, and the two differ.
func (h Hairpin) Check() error {
	if h.PubA == h.PubB || !h.PubA.IsValid() {
		return fmt.Errorf("public A %v, B %v", h.PubA, h.PubB)
	}
	if h.SeenAtA != h.PubB || h.SeenAtB != h.PubA {
		return fmt.Errorf("a saw b from %v (public %v), b saw a from %v (public %v)", h.SeenAtA, h.PubB, h.SeenAtB, h.PubA)
	}
	return nil
}

// reuse lets a TCP port be bound by a listener and by connections to
// other peers at once, as a subscriber that both serves and connects
// from one port does (its one mapping for all of them).
func reuse(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
	})
	return errors.Join(err, serr)
}

// HairpinTCP: b listens on a port and connects to srv4's echo server from
// it (b's mapping: srv4 sees PubB); a connects to the echo server too
// (PubA); then a connects from that same port to PubB. b accepts it and
// must see it from PubA; a line goes each way. srv is the echo server at
// to, on srv4.
func HairpinTCP(ctx context.Context, n *NS, srv *EchoServer, to netip.AddrPort, a, b netip.Addr) (Hairpin, error) {
	var h Hairpin
	var ln net.Listener
	if err := n.Do(func() (err error) {
		ln, err = (&net.ListenConfig{Control: reuse}).Listen(ctx, "tcp4", netip.AddrPortFrom(b, 0).String())
		return err
	}); err != nil {
		return h, err
	}
	defer ln.Close()
	pb := netip.MustParseAddrPort(ln.Addr().String())
	// echo connects from local to srv4 (kept open: the mapping's
	// connection) and returns the public address:port srv4 saw.
	echo := func(local netip.AddrPort, what string) (net.Conn, netip.AddrPort, error) {
		c, err := dialFrom(ctx, n, local, to)
		if err != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("%s: %w", what, err)
		}
		tok := newToken(Sub, what)
		if err := line(ctx, c, tok); err != nil {
			c.Close()
			return nil, netip.AddrPort{}, fmt.Errorf("%s: %w", what, err)
		}
		p, ok := srv.PeerOf(tok)
		if !ok {
			c.Close()
			return nil, netip.AddrPort{}, fmt.Errorf("%s: srv4 never saw %q", what, tok)
		}
		return c, p.Remote, nil
	}
	cb, pubB, err := echo(pb, "hairpin-tcp-b")
	if err != nil {
		return h, err
	}
	defer cb.Close()
	ca, pubA, err := echo(netip.AddrPortFrom(a, 0), "hairpin-tcp-a")
	if err != nil {
		return h, err
	}
	defer ca.Close()
	h.PubA, h.PubB = pubA, pubB

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := dialFrom(ctx, n, netip.MustParseAddrPort(ca.LocalAddr().String()), pubB)
	if err != nil {
		return h, fmt.Errorf("a to b's public %v: %w", pubB, err)
	}
	defer c.Close()
	h.SeenAtA = unmapped(netip.MustParseAddrPort(c.RemoteAddr().String()))
	var s net.Conn
	select {
	case s = <-accepted:
	case <-ctx.Done():
		ln.Close() // ends the Accept
		if s, ok := <-accepted; ok {
			s.Close()
		}
	}
	if s == nil {
		return h, errors.New("a connected, b accepted nothing")
	}
	defer s.Close()
	h.SeenAtB = unmapped(netip.MustParseAddrPort(s.RemoteAddr().String()))
	// A line each way over the hairpinned connection.
	for _, p := range [][2]net.Conn{{c, s}, {s, c}} {
		tok := newToken(Sub, "hairpin-tcp-line")
		if d, ok := ctx.Deadline(); ok {
			_ = p[1].SetDeadline(d)
		}
		if _, err := io.WriteString(p[0], tok+"\n"); err != nil {
			return h, err
		}
		got, err := bufio.NewReader(p[1]).ReadString('\n')
		if err != nil || got != tok+"\n" {
			return h, fmt.Errorf("over the hairpin: read %q, %v", got, err)
		}
	}
	return h, nil
}

// dialFrom connects from local (port 0: any) in n, the port shareable.
func dialFrom(ctx context.Context, n *NS, local, to netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: reuse}
		c, err = d.DialContext(ctx, "tcp4", to.String())
		return err
	})
	return c, err
}

// line sends tok as a line on c and reads it back (an echo server).
func line(ctx context.Context, c net.Conn, tok string) error {
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := io.WriteString(c, tok+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != tok+"\n" {
		return fmt.Errorf("echo %q, %v", got, err)
	}
	return nil
}

// HairpinUDP: a and b each make a mapping by an echo with srv4's echo
// server from a socket of their own (the first datagram may wait for a
// block: sent again every 300 ms); then b sends to PubA and a to PubB,
// each until it arrives, and where it arrives from is noted.
func HairpinUDP(ctx context.Context, n *NS, srv *EchoServer, to netip.AddrPort, a, b netip.Addr) (Hairpin, error) {
	var h Hairpin
	open := func(addr netip.Addr) (*net.UDPConn, error) {
		pc, err := n.ListenPacket("udp4", netip.AddrPortFrom(addr, 0).String())
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	}
	ua, err := open(a)
	if err != nil {
		return h, err
	}
	defer ua.Close()
	ub, err := open(b)
	if err != nil {
		return h, err
	}
	defer ub.Close()
	// send sends msg from c to dst until at receives it, and returns
	// where it came from.
	send := func(c, at *net.UDPConn, dst netip.AddrPort, msg string) (netip.AddrPort, error) {
		buf := make([]byte, 256)
		for ctx.Err() == nil {
			if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
				return netip.AddrPort{}, err
			}
			_ = at.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			for {
				k, from, err := at.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				if string(buf[:k]) == msg {
					return unmapped(from), nil
				}
			}
		}
		return netip.AddrPort{}, fmt.Errorf("%q to %v: %w", msg, dst, ctx.Err())
	}
	for _, s := range []struct {
		c   *net.UDPConn
		pub *netip.AddrPort
	}{{ua, &h.PubA}, {ub, &h.PubB}} {
		tok := newToken(Sub, "hairpin-udp")
		if _, err := send(s.c, s.c, to, tok+"\n"); err != nil {
			return h, err
		}
		p, ok := srv.PeerOf(tok)
		if !ok {
			return h, fmt.Errorf("srv4 never saw %q", tok)
		}
		*s.pub = p.Remote
	}
	if h.SeenAtA, err = send(ub, ua, h.PubA, newToken(Sub, "hairpin-b-to-a")); err != nil {
		return h, err
	}
	if h.SeenAtB, err = send(ua, ub, h.PubB, newToken(Sub, "hairpin-a-to-b")); err != nil {
		return h, err
	}
	return h, nil
}

// HairpinCheck is a tour row: SubAddr and SubAddr2 through each other's
// public address:port, over network ("udp" or "tcp"), each seen from the
// other's public address:port. SubAddr2's first packet waits for a block
// grant (a SYN is sent again after a second), so the row has 10 s.
func HairpinCheck(name, network string) Check {
	return Check{Name: name, Expect: Works, Timeout: 10 * time.Second, Run: func(ctx context.Context, e *Env) error {
		f := HairpinUDP
		if network == "tcp" {
			f = HairpinTCP
		}
		h, err := f(ctx, e.Lab.NS(Sub), e.Srv4, netip.AddrPortFrom(Srv4Addr, EchoPort), SubAddr, SubAddr2)
		if err != nil {
			return err
		}
		return h.Check()
	}}
}
