package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"
)

// BaselineChecks is the tour before unmap forwards anything: the site
// reaches IPv4 servers through its home router's NAT and the upstream
// CGNAT, and nothing else works — no IPv6 at all, no inbound path. The
// rows that fail here are the problem unmap exists to solve; as unmap
// learns each path, its row flips to Works.
func BaselineChecks() []Check {
	srv4 := netip.AddrPortFrom(Srv4Addr, EchoPort)
	srv6 := netip.AddrPortFrom(Srv6Addr, EchoPort)
	atSrv4 := func(e *Env) *EchoServer { return e.Srv4 }
	atSrv6 := func(e *Env) *EchoServer { return e.Srv6 }
	atLAN := func(e *Env) *EchoServer { return e.LAN }
	none := netip.Addr{}
	return []Check{
		EchoCheck("lan → srv4: TCP exchange, seen from the CGN address", Works, LAN, "tcp", atSrv4, srv4, CGNPublic),
		EchoCheck("lan → srv4: UDP echo, seen from the CGN address", Works, LAN, "udp", atSrv4, srv4, CGNPublic),
		{
			Name:   "lan → srv4: 1500-byte UDP packets both ways, DF set",
			Expect: Works,
			Run: func(ctx context.Context, e *Env) error {
				_, err := e.Lab.NS(LAN).EchoUDPPacket(ctx, srv4, newToken(LAN, "mtu"), MTU)
				return err
			},
		},
		PingCheck("lan → srv4: ping", Works, LAN, Srv4Addr),
		EchoCheck("rogue → srv4: TCP exchange, seen from the same CGN address", Works, Rogue, "tcp", atSrv4, srv4, CGNPublic),
		EchoCheck("lan → srv6: TCP over IPv6", Fails, LAN, "tcp", atSrv6, srv6, none),
		PingCheck("lan → srv6: ping over IPv6", Fails, LAN, Srv6Addr),
		EchoCheck("srv4 → lan: inbound TCP to the CGN address", Fails, Srv4, "tcp", atLAN, netip.AddrPortFrom(CGNPublic, EchoPort), Srv4Addr),
		EchoCheck("srv4 → lan: inbound UDP to the CGN address", Fails, Srv4, "udp", atLAN, netip.AddrPortFrom(CGNPublic, EchoPort), Srv4Addr),
		EchoCheck("srv6 → lan: inbound TCP to the site's IPv6 address", Fails, Srv6, "tcp", atLAN, netip.AddrPortFrom(SiteHost6Addr, EchoPort), Srv6Addr),
		withTimeout(time.Second, // nothing answers today: the SYN leaves, no reply finds sub
			EchoCheck("sub → srv4: through the relay's CGNAT", Fails, Sub, "tcp", atSrv4, srv4, none)),
	}
}

// EchoCheck is a row that runs one echo exchange from the namespace
// `from` to the echo server srv(e) at address to. It works only if the
// echo comes back and the server saw that very exchange (so a reply from
// some other host cannot pass) from seenFrom, when seenFrom is valid:
// proof of which NAT the path crossed, or that it crossed none.
func EchoCheck(name string, expect Expect, from Role, network string, srv func(*Env) *EchoServer, to netip.AddrPort, seenFrom netip.Addr) Check {
	return Check{Name: name, Expect: expect, Run: func(ctx context.Context, e *Env) error {
		n := e.Lab.NS(from)
		token := newToken(from, network)
		var err error
		switch network {
		case "tcp":
			_, err = n.EchoTCP(ctx, to, token)
		case "udp":
			_, err = n.EchoUDP(ctx, to, token)
		default:
			return fmt.Errorf("echo over %q", network)
		}
		if err != nil {
			return err
		}
		s := srv(e)
		p, ok := s.PeerOf(token)
		if !ok {
			return fmt.Errorf("an echo came back but the server at %s never saw it", s.Addr)
		}
		if seenFrom.IsValid() && p.Remote.Addr() != seenFrom {
			return fmt.Errorf("server saw the exchange from %s, want %s", p.Remote.Addr(), seenFrom)
		}
		return nil
	}}
}

// poolEchoCheck is EchoCheck that works when the server saw the
// exchange from any address of the relay's CGNAT pool (SubPool4).
func poolEchoCheck(name string, from Role, network string, srv func(*Env) *EchoServer, to netip.AddrPort) Check {
	return Check{Name: name, Expect: Works, Run: func(ctx context.Context, e *Env) error {
		n := e.Lab.NS(from)
		token := newToken(from, network)
		var err error
		if network == "tcp" {
			_, err = n.EchoTCP(ctx, to, token)
		} else {
			_, err = n.EchoUDP(ctx, to, token)
		}
		if err != nil {
			return err
		}
		p, ok := srv(e).PeerOf(token)
		if !ok {
			return fmt.Errorf("an echo came back but the server at %s never saw it", srv(e).Addr)
		}
		if !SubPool4.Contains(p.Remote.Addr()) {
			return fmt.Errorf("server saw the exchange from %s, want an address of %s", p.Remote.Addr(), SubPool4)
		}
		return nil
	}}
}

// PingCheck is a row that pings dst from the namespace `from`.
func PingCheck(name string, expect Expect, from Role, dst netip.Addr) Check {
	return Check{Name: name, Expect: expect, Run: func(ctx context.Context, e *Env) error {
		_, err := e.Lab.NS(from).Ping(ctx, dst)
		return err
	}}
}

func withTimeout(d time.Duration, c Check) Check {
	c.Timeout = d
	return c
}

// newToken makes a token no other exchange uses.
func newToken(from Role, what string) string {
	return fmt.Sprintf("%s-%s-%016x", from, what, rand.Uint64())
}

// UnmapChecks is the tour with unmap's agents running: host is the LAN
// host's address from the site's prefix. The IPv6 rows that fail in the
// baseline work, at full MTU, both ways, and the LAN's IPv4 leaves from
// the site's public IPv4 (ping keeps the ordinary path).
func UnmapChecks(host netip.Addr) []Check {
	srv4 := netip.AddrPortFrom(Srv4Addr, EchoPort)
	srv6 := netip.AddrPortFrom(Srv6Addr, EchoPort)
	atLAN := func(e *Env) *EchoServer { return e.LAN }
	atSrv4 := func(e *Env) *EchoServer { return e.Srv4 }
	atSrv6 := func(e *Env) *EchoServer { return e.Srv6 }
	toHost := netip.AddrPortFrom(host, EchoPort)
	forward := netip.AddrPortFrom(SitePublic4, ForwardPort)
	return []Check{
		EchoCheck("lan → srv6: TCP over IPv6, seen from the host's own address", Works, LAN, "tcp", atSrv6, srv6, host),
		EchoCheck("lan → srv6: UDP over IPv6, seen from the host's own address", Works, LAN, "udp", atSrv6, srv6, host),
		PingCheck("lan → srv6: ping over IPv6", Works, LAN, Srv6Addr),
		{
			Name:   "lan → srv6: 1500-byte IPv6 UDP packets both ways, no fragments",
			Expect: Works,
			Run: func(ctx context.Context, e *Env) error {
				_, err := e.Lab.NS(LAN).EchoUDPPacket(ctx, srv6, newToken(LAN, "mtu6"), MTU)
				return err
			},
		},
		EchoCheck("srv6 → lan: inbound UDP to the host's address", Works, Srv6, "udp", atLAN, toHost, Srv6Addr),
		PingCheck("srv6 → lan: inbound ping to the host's address", Works, Srv6, host),
		{
			Name:   "srv6 → lan: 1500-byte IPv6 UDP packets both ways, no fragments",
			Expect: Works,
			Run: func(ctx context.Context, e *Env) error {
				_, err := e.Lab.NS(Srv6).EchoUDPPacket(ctx, toHost, newToken(Srv6, "mtu6"), MTU)
				return err
			},
		},
		EchoCheck("srv6 → lan: inbound TCP to the host's address (carrier handshake)", Works, Srv6, "tcp", atLAN, toHost, Srv6Addr),
		EchoCheck("lan → srv4: TCP over IPv4, seen from the site's public IPv4", Works, LAN, "tcp", atSrv4, srv4, SitePublic4),
		EchoCheck("lan → srv4: UDP over IPv4, seen from the site's public IPv4", Works, LAN, "udp", atSrv4, srv4, SitePublic4),
		{
			Name:   "lan → srv4: 1500-byte IPv4 UDP packets both ways, DF set",
			Expect: Works,
			Run: func(ctx context.Context, e *Env) error {
				_, err := e.Lab.NS(LAN).EchoUDPPacket(ctx, srv4, newToken(LAN, "mtu4"), MTU)
				return err
			},
		},
		// The relay's CGNAT: the subscriber's first packet finds no block
		// and is dropped while the agent grants one (a TCP SYN is sent again
		// after a second), so these rows have 5 s.
		withTimeout(5*time.Second, EchoCheck("sub → srv4: TCP through the relay's CGNAT, seen from its pool", Works, Sub, "tcp", atSrv4, srv4, SubPool4.Addr())),
		withTimeout(5*time.Second, EchoCheck("sub → srv4: UDP through the relay's CGNAT, seen from its pool", Works, Sub, "udp", atSrv4, srv4, SubPool4.Addr())),
		withTimeout(5*time.Second, PingCheck("sub → srv4: ping through the relay's CGNAT", Works, Sub, Srv4Addr)),
		// NAT64: the IPv6-only subscriber reaches srv4 at its address in
		// 64:ff9b::/96, from the same pool (its /64's own block).
		// (The /64 gets its block on the pool address with the most free
		// blocks: not sub's.)
		withTimeout(5*time.Second, poolEchoCheck("sub6 → srv4 via NAT64: TCP, seen from the pool", Sub6, "tcp", atSrv4, netip.AddrPortFrom(NAT64Addr(Srv4Addr), EchoPort))),
		withTimeout(5*time.Second, poolEchoCheck("sub6 → srv4 via NAT64: UDP, seen from the pool", Sub6, "udp", atSrv4, netip.AddrPortFrom(NAT64Addr(Srv4Addr), EchoPort))),
		withTimeout(5*time.Second, PingCheck("sub6 → srv4 via NAT64: ping", Works, Sub6, NAT64Addr(Srv4Addr))),
		// Hairpinning (hairpin.go): two subscribers of the sub host through
		// each other's public address:port, turned round by the relay's XDP.
		HairpinCheck("sub → sub: UDP hairpin through the relay's CGNAT, each seen from the other's public address:port", "udp"),
		HairpinCheck("sub → sub: TCP hairpin through the relay's CGNAT, each seen from the other's public address:port", "tcp"),
		EchoCheck("srv4 → lan: UDP to a forwarded port of the public IPv4", Works, Srv4, "udp", atLAN, forward, Srv4Addr),
		EchoCheck("srv4 → lan: TCP to a forwarded port of the public IPv4", Works, Srv4, "tcp", atLAN, forward, Srv4Addr),
		MapCheck("srv4 → lan: UDP to a port the host mapped by NAT-PMP", "natpmp", NATPMPTourPort),
		MapCheck("srv4 → lan: TCP to a port the host mapped by PCP", "pcp", PCPTourPort),
		SubMapCheck("srv4 → sub: TCP to a port the subscriber mapped by PCP on the relay's CGNAT"),
		RestartCheck("lan → srv6: an established TCP connection outlives an edge agent restart", Edge, srv6),
		RestartCheck("lan → srv6: an established TCP connection outlives a relay restart", Relay, srv6),
		{
			Name:    "lan → srv6: traceroute lists every hop (carrier path as 64:ff9b::, then beyond the relay)",
			Expect:  Works,
			Timeout: 30 * time.Second,
			Run: func(ctx context.Context, e *Env) error {
				// One probe a hop: the tour's other rows hold carrier ports too.
				// Trace6 probes as traceroute6 does; TestTraceroute6 runs the real one.
				hops, _, err := e.Lab.NS(LAN).Trace6(ctx, Srv6Addr, 1)
				if err != nil {
					return err
				}
				return CheckHops(hops, TraceToSrv6())
			},
		},
		{
			Name:    "lan → srvn: TCP upload across a 1400-byte link beyond the relay, path MTU learned",
			Expect:  Works,
			Timeout: 15 * time.Second,
			Run: func(ctx context.Context, e *Env) error {
				_, err := UploadPastNarrow(ctx, e.Lab, 1<<20)
				return err
			},
		},
	}
}

// RestartCheck: the LAN host holds a TCP connection to to, exchanging a
// line before and after the agent of role restarts; the connection
// itself must carry on (no reconnect). The agent loads and verifies its
// XDP programs again before it connects: under load from other processes
// that alone has taken over the default 3 s, so the row has 10.
func RestartCheck(name string, role Role, to netip.AddrPort) Check {
	return Check{Name: name, Expect: Works, Timeout: 10 * time.Second, Run: func(ctx context.Context, e *Env) error {
		if e.Agents == nil {
			return errors.New("no agents to restart")
		}
		c, err := e.Lab.NS(LAN).Dial(ctx, "tcp", to.String())
		if err != nil {
			return err
		}
		defer c.Close()
		r := bufio.NewReader(c)
		line := func(what string) error {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			tok := newToken(LAN, what)
			if _, err := io.WriteString(c, tok+"\n"); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			got, err := r.ReadString('\n')
			if err != nil || got != tok+"\n" {
				return fmt.Errorf("%s: echo %q, %v", what, got, err)
			}
			return nil
		}
		if err := line("before"); err != nil {
			return err
		}
		if err := e.Agents.Restart(ctx, role); err != nil {
			return err
		}
		return line("after")
	}}
}
