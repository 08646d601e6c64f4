package control

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/labtest"
)

// Tests through the netns lab: the edge in the edge namespace, the relay
// in the relay namespace, and a real nftables CGNAT (fully random mapping)
// in between. They need root (priv.Require, via lab.NewForTest).

// labPair starts a relay and an edge in a lab and returns them with the
// relay's first session.
func labPair(t *testing.T, l *lab.Lab, keepalive time.Duration) (*Server, *Client, *Session) {
	t.Helper()
	relayAt := netip.AddrPortFrom(lab.RelayAddr, 4443)
	rpc, err := l.NS(lab.Relay).ListenPacket("udp4", relayAt.String())
	if err != nil {
		t.Fatal(err)
	}
	epc, err := l.NS(lab.Edge).ListenPacket("udp4", netip.AddrPortFrom(lab.EdgeWANAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) { c.PacketConn = rpc })
	c := startEdge(t, p, "home-1", net.UDPAddrFromAddrPort(relayAt), newFakeEdge(), func(c *ClientConfig) {
		c.PacketConn = epc
		c.Keepalive = keepalive
	})
	waitConnected(t, c)
	return srv, c, recvWithin(t, relay.started, "session")
}

// publicPort is the edge's port as the relay sees it: the CGN's mapping.
func publicPort(t *testing.T, ss *Session) uint16 {
	t.Helper()
	ap := ss.RemoteAddr().(*net.UDPAddr).AddrPort()
	if ap.Addr().Unmap() != lab.CGNPublic {
		t.Fatalf("relay sees the edge at %v, not behind the CGN's %v", ap, lab.CGNPublic)
	}
	return ap.Port()
}

// TestLabCGNRebinding: the CGN forgets its mappings (conntrack flushed)
// and maps the edge's next packet to a new random port; the session moves
// to it without a new handshake.
func TestLabCGNRebinding(t *testing.T) {
	l := labtest.New(t, lab.Options{CGNMode: lab.CGNRandom})
	srv, c, ss := labPair(t, l, time.Second)
	ctx := context.Background()
	if _, err := openFlow(ctx, c, nil, testFlow("home-1", 1), 1); err != nil {
		t.Fatal(err)
	}
	before := publicPort(t, ss)
	after := before
	// A fully random mapping may, rarely, land on the same port again.
	for try := 0; try < 3 && after == before; try++ {
		if err := l.NS(lab.CGN).Netlink().ConntrackTableFlush(netlink.ConntrackTable); err != nil {
			t.Fatalf("flushing the CGN's conntrack: %v", err)
		}
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := openFlow(octx, c, nil, testFlow("home-1", 2+try), 2+try)
		cancel()
		if err != nil {
			t.Fatalf("flow open after the CGN rebound: %v", err)
		}
		after = publicPort(t, ss)
	}
	if after == before {
		t.Fatalf("the CGN kept port %d through three flushes", before)
	}
	t.Logf("CGN public port %d -> %d", before, after)
	if n := srv.Counters().Get("sessions_started"); n != 1 {
		t.Errorf("%d sessions: the rebinding cost a new handshake", n)
	}
}

// TestLabKeepaliveHoldsShortCGNTimeout: a CGN that forgets idle UDP
// mappings after 3 s; keepalives every second hold the mapping, so the
// relay sees the same public port after several timeouts' worth of idling.
func TestLabKeepaliveHoldsShortCGNTimeout(t *testing.T) {
	l := labtest.New(t, lab.Options{CGNMode: lab.CGNRandom, CGNUDPTimeout: 3 * time.Second})
	srv, c, ss := labPair(t, l, time.Second)
	before := publicPort(t, ss)
	time.Sleep(10 * time.Second)
	if after := publicPort(t, ss); after != before {
		t.Errorf("public port changed %d -> %d: the mapping expired despite keepalives", before, after)
	}
	if _, err := openFlow(context.Background(), c, nil, testFlow("home-1", 1), 1); err != nil {
		t.Fatal(err)
	}
	if n := srv.Counters().Get("sessions_started"); n != 1 {
		t.Errorf("%d sessions", n)
	}
}
