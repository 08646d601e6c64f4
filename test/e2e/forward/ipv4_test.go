package forward

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestSiteIPv4 proves the site's public IPv4 from the relay (issue 5,
// proofs 4 and 7): the LAN host's IPv4 TCP and UDP reach srv4 from the
// site's own address, not the CGN's; 1500-byte IPv4 packets cross both
// ways whole; a port forward of the public address reaches the LAN host
// over UDP and TCP.
func TestSiteIPv4(t *testing.T) { e2e.BothCGNs(t, testSiteIPv4) }

func testSiteIPv4(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, network := range []string{"tcp", "udp"} {
		token := "site-ipv4-" + network
		start := time.Now()
		var err error
		if network == "tcp" {
			_, err = l.NS(lab.LAN).EchoTCP(ctx, to, token)
		} else {
			_, err = l.NS(lab.LAN).EchoUDP(ctx, to, token)
		}
		if err != nil {
			t.Errorf("%s lan → srv4: %v", network, err)
			continue
		}
		t.Logf("%s lan → srv4: first exchange in %v", network, time.Since(start))
		if peer, ok := srv.PeerOf(token); !ok || peer.Remote.Addr() != lab.SitePublic4 {
			t.Errorf("%s: srv4 saw %+v (found %v), want the site's public IPv4 %v", network, peer, ok, lab.SitePublic4)
		}
		if network == "udp" {
			e2e.FirstNotLost(t, srv, token)
		}
	}
	// Full MTU: NAPT at both ends keeps a 1500-byte IPv4 packet whole
	// (DF set: nothing may fragment it).
	if _, err := l.NS(lab.LAN).EchoUDPPacket(ctx, to, "site-ipv4-1500", lab.MTU); err != nil {
		t.Errorf("1500-byte IPv4 UDP lan → srv4 and back: %v", err)
	}
	checkMSS(t, ctx, l.NS(lab.LAN), to)
	// Ping keeps the ordinary path, from the CGN's address.
	if _, err := l.NS(lab.LAN).Ping(ctx, lab.Srv4Addr); err != nil {
		t.Errorf("ping lan → srv4: %v", err)
	}

	// Inbound: the forward of the public address's UDP port.
	lanSrv := e2e.EchoServer(t, l.NS(lab.LAN))
	fwd := netip.AddrPortFrom(lab.SitePublic4, lab.ForwardPort)
	if _, err := l.NS(lab.Srv4).EchoUDP(ctx, fwd, "forward-udp"); err != nil {
		t.Fatalf("srv4 → %v (forwarded UDP): %v", fwd, err)
	}
	if peer, ok := lanSrv.PeerOf("forward-udp"); !ok || peer.Remote.Addr() != lab.Srv4Addr {
		t.Errorf("lan host saw %+v (found %v), want srv4's own address %v", peer, ok, lab.Srv4Addr)
	}
	e2e.FirstNotLost(t, lanSrv, "forward-udp")
	if _, err := l.NS(lab.Srv4).EchoUDPPacket(ctx, fwd, "forward-1500", lab.MTU); err != nil {
		t.Errorf("1500-byte IPv4 UDP srv4 → forward and back: %v", err)
	}
	// TCP through the forward: the carrier handshake, as for IPv6.
	if _, err := l.NS(lab.Srv4).EchoTCP(ctx, fwd, "forward-tcp"); err != nil {
		t.Errorf("srv4 → %v (forwarded TCP): %v", fwd, err)
	} else if peer, ok := lanSrv.PeerOf("forward-tcp"); !ok || peer.Remote.Addr() != lab.Srv4Addr {
		t.Errorf("lan host saw %+v (found %v), want srv4's own address %v", peer, ok, lab.Srv4Addr)
	}
	// A port that is not forwarded stays closed.
	closed := netip.AddrPortFrom(lab.SitePublic4, lab.ForwardPort+1)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := l.NS(lab.Srv4).EchoUDP(short, closed, "not-forwarded"); err == nil {
		t.Errorf("srv4 → %v: answered, but that port is not forwarded", closed)
	}
}
