package forward

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

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
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	relay := d.StartRelay(t, l)
	d.StartEdge(t, l)

	s := e2e.Section(t, d.EdgeS, "session", "the edge's session", func(s e2e.EdgeSession) bool { return s.Connected })
	if s.Prefix != "2001:db8:5::/56" {
		t.Errorf("granted prefix %s", s.Prefix)
	}
	// The relay sees the edge from the CGN's public address: the control
	// channel really crossed the NAT.
	c := e2e.Section(t, d.RelaySock, "carriers", "the relay's session", func(c relayCarriers) bool { return len(c.Sessions) == 1 })
	from, err := netip.ParseAddrPort(c.Sessions["home"].From)
	if err != nil || from.Addr() != lab.CGNPublic {
		t.Errorf("relay sees the edge from %q, want %v", c.Sessions["home"].From, lab.CGNPublic)
	}

	// The LAN host takes an address in the delegated /64 from the edge's RAs.
	e2e.WaitAddr(t, l.NS(lab.LAN), lab.SitePrefix)

	// Restart the relay: the edge reconnects on a new session by itself.
	if err := relay.Stop(); err != nil {
		t.Logf("relay stop: %v", err)
	}
	e2e.Section(t, d.EdgeS, "session", "the edge to notice", func(e e2e.EdgeSession) bool { return !e.Connected || e.Session != s.Session })
	d.StartRelay(t, l)
	s2 := e2e.Section(t, d.EdgeS, "session", "a new session", func(e e2e.EdgeSession) bool { return e.Connected && e.Session != s.Session })
	if s2.Prefix != s.Prefix {
		t.Errorf("prefix after reconnect %s, want %s", s2.Prefix, s.Prefix)
	}
}

// TestOutboundIPv6 proves the claim for outbound flows: a LAN host with
// no IPv6 from its ISP reaches an IPv6-only server through the CGN, over
// TCP and UDP, its first packets included, and the server sees the host's
// own address; 50 MB cross each way on one TCP connection, verified, and
// 1500-byte packets whole; no flow waited for the control channel.
func TestOutboundIPv6(t *testing.T) { e2e.BothCGNs(t, testOutboundIPv6) }

func testOutboundIPv6(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l := u.Lab
	host := u.Host
	srv := e2e.EchoServer(t, l.NS(lab.Srv6))
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
			e2e.FirstNotLost(t, srv, token)
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
	sp := e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's slow path", func(map[string]uint64) bool { return true })
	if sp["picked"] == 0 || sp["pick-taken"] != 0 {
		t.Errorf("edge slow path %v: want flows on picked R, none refused", sp)
	}
	// The closed 50 MB connection's FINs were seen in the datapath: the
	// edge moves it to the transitory timeout at its next look (20 s).
	wctx, wcancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer wcancel()
	if _, err := lab.WaitSection(wctx, u.D.EdgeS, "slowpath", func(m map[string]uint64) bool { return m["tcp-closed"] >= 1 }); err != nil {
		t.Errorf("the edge never saw a TCP connection end: %v", err)
	}
}
