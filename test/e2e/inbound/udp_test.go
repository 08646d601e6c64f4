package inbound

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestInboundIPv6UDP proves an Internet host can reach a LAN host first:
// srv6 sends to the host's address, the relay offers the flow to the
// edge, the edge's policy accepts it and opens a carrier through the CGN
// with an opener, and the held datagram and its answer go through.
func TestInboundIPv6UDP(t *testing.T) { e2e.BothCGNs(t, testInboundIPv6UDP) }

func testInboundIPv6UDP(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l := u.Lab
	host := u.Host
	srv := e2e.EchoServer(t, l.NS(lab.LAN))
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
	e2e.FirstNotLost(t, srv, "inbound-udp")
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
