package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// EchoPort is where the tour's echo servers listen, TCP and UDP.
const EchoPort = 7

// maxPeers bounds what an echo server remembers: the latest conversations.
const maxPeers = 4096

// Peer is one conversation an echo server saw: TCP connection or UDP
// datagram, the source address as it arrived (after every NAT on the
// way), and the first line the client sent, a token the client chose so
// that it can find its own conversation.
type Peer struct {
	Network string // "tcp" or "udp"
	Remote  netip.AddrPort
	Token   string
}

// EchoServer answers every line it gets over TCP or UDP with the same line,
// and remembers who sent it.
type EchoServer struct {
	Addr netip.AddrPort
	tcp  net.Listener
	udp  net.PacketConn

	mu     sync.Mutex
	peers  []Peer
	conns  map[net.Conn]struct{} // open TCP connections, closed by Close
	closed bool
	wg     sync.WaitGroup
}

// StartEcho starts TCP and UDP echo servers on addr inside the namespace.
func (n *NS) StartEcho(addr netip.AddrPort) (*EchoServer, error) {
	ln, err := n.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("%s: echo: %w", n.Name, err)
	}
	pc, err := n.ListenPacket("udp", addr.String())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: echo: %w", n.Name, err)
	}
	s := &EchoServer{Addr: addr, tcp: ln, udp: pc, conns: map[net.Conn]struct{}{}}
	s.wg.Add(2)
	go s.serveTCP()
	go s.serveUDP()
	n.track(s.Close)
	return s, nil
}

// Close stops the server, drops its open connections and waits for its
// goroutines.
func (s *EchoServer) Close() error {
	err := errors.Join(s.tcp.Close(), s.udp.Close())
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Peers returns what the server saw so far.
func (s *EchoServer) Peers() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Peer(nil), s.peers...)
}

// PeerOf finds the conversation that sent token.
func (s *EchoServer) PeerOf(token string) (Peer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if p.Token == token {
			return p, true
		}
	}
	return Peer{}, false
}

func (s *EchoServer) remember(p Peer) {
	s.mu.Lock()
	if len(s.peers) == maxPeers {
		s.peers = append(s.peers[:0], s.peers[1:]...)
	}
	s.peers = append(s.peers, p)
	s.mu.Unlock()
}

func (s *EchoServer) serveTCP() {
	defer s.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			r := bufio.NewReaderSize(io.LimitReader(c, 1<<20), 4096)
			first := true
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if first {
					remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
					s.remember(Peer{Network: "tcp", Remote: unmapped(remote), Token: strings.TrimSuffix(line, "\n")})
					first = false
				}
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}()
	}
}

func (s *EchoServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error for an earlier reply: keep serving
		}
		remote, _ := netip.ParseAddrPort(from.String())
		line, _, _ := strings.Cut(string(buf[:n]), "\n")
		s.remember(Peer{Network: "udp", Remote: unmapped(remote), Token: line})
		_, _ = s.udp.WriteTo(buf[:n], from)
	}
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// EchoTCP connects from n to an echo server at to, sends token as a line
// and checks that it comes back. It returns the connection's local
// address (before any NAT), to compare with what the server saw.
func (n *NS) EchoTCP(ctx context.Context, to netip.AddrPort, token string) (netip.AddrPort, error) {
	c, err := n.Dial(ctx, "tcp", to.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	if _, err := io.WriteString(c, token+"\n"); err != nil {
		return local, err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return local, fmt.Errorf("read echo: %w", err)
	}
	if got != token+"\n" {
		return local, fmt.Errorf("echo %q, sent %q", got, token)
	}
	return unmapped(local), nil
}

// EchoUDP sends token from n to a UDP echo server at to until the echo
// comes back or ctx ends, resending every 200 ms. It returns the local
// address used.
func (n *NS) EchoUDP(ctx context.Context, to netip.AddrPort, token string) (netip.AddrPort, error) {
	return n.echoUDP(ctx, to, token, 0)
}

// EchoUDPPacket is EchoUDP with IP packets of exactly size bytes (IP
// header included, the token padded out) and fragmentation forbidden (DF
// on IPv4, no fragment header on IPv6): it proves a path carries packets
// of that size both ways. A packet larger than the path's MTU fails with
// "message too long" (locally, or once an ICMP "too big" came back).
func (n *NS) EchoUDPPacket(ctx context.Context, to netip.AddrPort, token string, size int) (netip.AddrPort, error) {
	hdr := 20 + 8
	if to.Addr().Is6() && !to.Addr().Is4In6() {
		hdr = 40 + 8
	}
	if size < hdr+len(token)+1 || size > 65535 {
		return netip.AddrPort{}, fmt.Errorf("packet of %d bytes cannot hold the token", size)
	}
	return n.echoUDP(ctx, to, token, size-hdr)
}

// echoUDP runs the exchange; payload > 0 pads the datagram to that many
// bytes and sets don't-fragment.
func (n *NS) echoUDP(ctx context.Context, to netip.AddrPort, token string, payload int) (netip.AddrPort, error) {
	c, err := n.Dial(ctx, "udp", to.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	msg := []byte(token + "\n")
	if payload > 0 {
		if err := dontFragment(c.(*net.UDPConn), to.Addr().Is6() && !to.Addr().Is4In6()); err != nil {
			return netip.AddrPort{}, err
		}
		msg = append(msg, bytes.Repeat([]byte{'.'}, payload-len(msg))...)
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	buf := make([]byte, 65536)
	for {
		if _, err := c.Write(msg); err != nil {
			return local, err
		}
		wait := time.Now().Add(200 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(wait) {
			wait = d
		}
		_ = c.SetReadDeadline(wait)
		m, err := c.Read(buf)
		if err == nil && bytes.Equal(buf[:m], msg) {
			return unmapped(local), nil
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return local, err // e.g. ICMP port unreachable: connection refused
		}
		if ctx.Err() != nil {
			return local, fmt.Errorf("no echo: %w", ctx.Err())
		}
	}
}

// dontFragment makes the socket send with DF (IPv4) or without fragmenting
// (IPv6), and report a too-large send as EMSGSIZE instead.
func dontFragment(c *net.UDPConn, v6 bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		}
	})
	return errors.Join(err, serr)
}
