package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/status"
	"github.com/unmap-dev/unmap/test/labtest"
)

// deployment is the lab's deployment with the test's hooks.
type deployment struct {
	*lab.Deployment
	relaySock, edgeS string
}

// carrierPorts is the relay's carrier port range in the tests.
const carrierPorts = lab.RelayCarrierPorts

// deploy makes the certificates with the binary's own `unmap cert` and
// writes relay.yaml and edge.yaml for the lab's addressing plan.
func deploy(t *testing.T, bin string) *deployment {
	t.Helper()
	d, err := lab.Deploy(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return &deployment{Deployment: d, relaySock: d.RelaySocket, edgeS: d.EdgeSocket}
}

// running is a lab with unmap up in it: the relay and edge running, the
// edge's session up, the LAN host's address from the site's prefix.
type running struct {
	lab     *lab.Lab
	d       *deployment
	relay   *lab.Process
	edge    *lab.Process
	session edgeSession
	host    netip.Addr
}

func up(t *testing.T, mode lab.CGNMode) running {
	t.Helper()
	u := running{lab: labtest.New(t, lab.Options{CGNMode: mode, CGNUDPTimeout: 30 * time.Second})}
	u.d = deploy(t, lab.BuildUnmap(t))
	u.relay = u.d.startRelay(t, u.lab)
	u.edge = u.d.startEdge(t, u.lab)
	u.d.dumpOnFailure(t)
	u.session = section(t, u.d.edgeS, "session", "the edge's session", func(s edgeSession) bool { return s.Connected })
	u.host = waitAddr(t, u.lab.NS(lab.LAN), lab.SitePrefix)
	return u
}

// bothCGNs runs a test with the upstream CGN in each mode, with the
// 30 s UDP timeout some CGNATs use: port-preserving masquerade, and
// random,fully-random (address-and-port-dependent mapping, the harsh
// case). Carriers bind by token, not by port, so both must work.
func bothCGNs(t *testing.T, test func(*testing.T, lab.CGNMode)) {
	for _, mode := range []lab.CGNMode{lab.CGNPreserve, lab.CGNRandom} {
		t.Run(mode.String(), func(t *testing.T) { test(t, mode) })
	}
}

// dumpOnFailure logs both agents' status when the test fails: the
// counters say where packets went.
func (d *deployment) dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, sock := range []string{d.edgeS, d.relaySock} {
			st, err := status.Fetch(context.Background(), sock)
			if err != nil {
				t.Logf("%s: %v", sock, err)
				continue
			}
			for name, v := range st.Sections {
				t.Logf("%s %s: %s", st.Role, name, v)
			}
		}
	})
}

func (d *deployment) startRelay(t *testing.T, l *lab.Lab) *lab.Process {
	return l.NS(lab.Relay).StartProcess(t, d.RelayCmd())
}

func (d *deployment) startEdge(t *testing.T, l *lab.Lab) *lab.Process {
	return l.NS(lab.Edge).StartProcess(t, d.EdgeCmd())
}

// section polls an agent's status until cond accepts the named section.
func section[T any](t *testing.T, socket, name, what string, cond func(T) bool) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	v, err := lab.WaitSection(ctx, socket, name, cond)
	if err != nil {
		t.Fatalf("gave up waiting for %s: %v", what, err)
	}
	return v
}

type edgeSession = lab.EdgeSession

type relayCarriers struct {
	Sessions map[string]struct {
		ID   uint64 `json:"id"`
		From string `json:"from"`
	} `json:"sessions"`
}

// TestAgentsConnectThroughCGN runs `unmap relay` and `unmap edge` as two
// processes with certificates made by `unmap cert`: the edge reaches the
// relay through the CGN, is granted its prefix, serves it to the LAN by
// SLAAC, and comes back on a new session after the relay restarts.
func TestAgentsConnectThroughCGN(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	d := deploy(t, lab.BuildUnmap(t))
	relay := d.startRelay(t, l)
	d.startEdge(t, l)

	s := section(t, d.edgeS, "session", "the edge's session", func(s edgeSession) bool { return s.Connected })
	if s.Prefix != "2001:db8:5::/56" {
		t.Errorf("granted prefix %s", s.Prefix)
	}
	// The relay sees the edge from the CGN's public address: the control
	// channel really crossed the NAT.
	c := section(t, d.relaySock, "carriers", "the relay's session", func(c relayCarriers) bool { return len(c.Sessions) == 1 })
	from, err := netip.ParseAddrPort(c.Sessions["home"].From)
	if err != nil || from.Addr() != lab.CGNPublic {
		t.Errorf("relay sees the edge from %q, want %v", c.Sessions["home"].From, lab.CGNPublic)
	}

	// The LAN host takes an address in the delegated /64 from the edge's RAs.
	waitAddr(t, l.NS(lab.LAN), lab.SitePrefix)

	// Restart the relay: the edge reconnects on a new session by itself.
	if err := relay.Stop(); err != nil {
		t.Logf("relay stop: %v", err)
	}
	section(t, d.edgeS, "session", "the edge to notice", func(e edgeSession) bool { return !e.Connected || e.Session != s.Session })
	d.startRelay(t, l)
	s2 := section(t, d.edgeS, "session", "a new session", func(e edgeSession) bool { return e.Connected && e.Session != s.Session })
	if s2.Prefix != s.Prefix {
		t.Errorf("prefix after reconnect %s, want %s", s2.Prefix, s.Prefix)
	}
}

func waitAddr(t *testing.T, ns *lab.NS, p netip.Prefix) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a, err := ns.WaitAddr(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestOutboundIPv6 proves the claim for outbound flows: a LAN host with
// no IPv6 from its ISP reaches an IPv6-only server through the CGN, over
// TCP and UDP, its first packets included, and the server sees the host's
// own address; 50 MB cross each way on one TCP connection, verified, and
// 1500-byte packets whole; no flow waited for the control channel.
func TestOutboundIPv6(t *testing.T) { bothCGNs(t, testOutboundIPv6) }

func testOutboundIPv6(t *testing.T, mode lab.CGNMode) {
	u := up(t, mode)
	l := u.lab
	host := u.host
	srv := echoServer(t, l.NS(lab.Srv6))
	to := netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, network := range []string{"tcp", "udp"} {
		token := "outbound-" + network
		var from netip.AddrPort
		var err error
		start := time.Now()
		if network == "tcp" {
			from, err = l.NS(lab.LAN).EchoTCP(ctx, to, token)
		} else {
			from, err = l.NS(lab.LAN).EchoUDP(ctx, to, token)
		}
		if err != nil {
			t.Errorf("%s lan → srv6: %v", network, err)
			continue
		}
		t.Logf("%s lan → srv6: first exchange in %v", network, time.Since(start))
		peer, ok := srv.PeerOf(token)
		if !ok || peer.Remote.Addr() != host {
			t.Errorf("%s: srv6 saw %+v (found %v), want the host %v (host used %v)", network, peer, ok, host, from)
		}
		if network == "udp" {
			firstNotLost(t, srv, token)
		}
	}
	// Full MTU: a 1500-byte IPv6 packet crosses as a 1480-byte IPv4
	// carrier, whole, both ways (DF set: nothing may fragment it).
	if _, err := l.NS(lab.LAN).EchoUDPPacket(ctx, to, "outbound-1500", lab.MTU); err != nil {
		t.Errorf("1500-byte IPv6 UDP lan → srv6 and back: %v", err)
	}
	if rtt, err := l.NS(lab.LAN).Ping(ctx, lab.Srv6Addr); err != nil {
		t.Errorf("ping lan → srv6: %v", err)
	} else {
		t.Logf("ping lan → srv6: %v", rtt)
	}
	// Full MTU, proof 4: ICMPv6 echo of 1452 bytes (1500-byte packets)
	// both ways, and the LAN host's TCP connection with a 1440-byte MSS.
	if _, err := l.NS(lab.LAN).PingSize(ctx, lab.Srv6Addr, 1452); err != nil {
		t.Errorf("1452-byte ping lan → srv6: %v", err)
	}
	checkMSS(t, ctx, l.NS(lab.LAN), to)
	// 50 MB each way over one TCP connection, verified by hash.
	if _, err := exchangeThrough(ctx, l.NS(lab.Srv6), l.NS(lab.LAN), netip.AddrPortFrom(lab.Srv6Addr, 443)); err != nil {
		t.Errorf("50 MB each way lan ↔ srv6: %v", err)
	}
	// The edge picked R itself and sent at once (no added round trip),
	// and the relay confirmed its picks.
	sp := section(t, u.d.edgeS, "slowpath", "the edge's slow path", func(map[string]uint64) bool { return true })
	if sp["picked"] == 0 || sp["pick-taken"] != 0 {
		t.Errorf("edge slow path %v: want flows on picked R, none refused", sp)
	}
	// The closed 50 MB connection's FINs were seen in the datapath: the
	// edge moves it to the transitory timeout at its next look (20 s).
	wctx, wcancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer wcancel()
	if _, err := lab.WaitSection(wctx, u.d.edgeS, "slowpath", func(m map[string]uint64) bool { return m["tcp-closed"] >= 1 }); err != nil {
		t.Errorf("the edge never saw a TCP connection end: %v", err)
	}
}

// TestInboundIPv6UDP proves an Internet host can reach a LAN host first:
// srv6 sends to the host's address, the relay offers the flow to the
// edge, the edge's policy accepts it and opens a carrier through the CGN
// with an opener, and the held datagram and its answer go through.
func TestInboundIPv6UDP(t *testing.T) { bothCGNs(t, testInboundIPv6UDP) }

func testInboundIPv6UDP(t *testing.T, mode lab.CGNMode) {
	u := up(t, mode)
	l := u.lab
	host := u.host
	srv := echoServer(t, l.NS(lab.LAN))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(host, lab.EchoPort), "inbound-udp"); err != nil {
		t.Fatalf("srv6 → lan UDP: %v", err)
	}
	t.Logf("srv6 → lan: first exchange in %v", time.Since(start))
	peer, ok := srv.PeerOf("inbound-udp")
	if !ok || peer.Remote.Addr() != lab.Srv6Addr {
		t.Errorf("lan host saw %+v (found %v), want srv6's own address %v", peer, ok, lab.Srv6Addr)
	}
	firstNotLost(t, srv, "inbound-udp")
	if _, err := l.NS(lab.Srv6).EchoUDPPacket(ctx, netip.AddrPortFrom(host, lab.EchoPort), "inbound-1500", lab.MTU); err != nil {
		t.Errorf("1500-byte IPv6 UDP srv6 → lan and back: %v", err)
	}
	if _, err := l.NS(lab.Srv6).PingSize(ctx, host, 1452); err != nil {
		t.Errorf("1452-byte ping srv6 → lan: %v", err)
	}
	if rtt, err := l.NS(lab.Srv6).Ping(ctx, host); err != nil {
		t.Errorf("ping srv6 → lan: %v", err)
	} else {
		t.Logf("ping srv6 → lan: %v", rtt)
	}
}

// firstNotLost checks the echo server got the token's datagram once: the
// client resends after 200 ms without an answer, so a second copy means
// the flow's first packet was lost while the flow was set up.
func firstNotLost(t *testing.T, srv *lab.EchoServer, token string) {
	t.Helper()
	n := 0
	for _, p := range srv.Peers() {
		if p.Token == token {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the server received %d copies of %q: the first packet of the flow was lost", n, token)
	}
}
