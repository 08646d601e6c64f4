package lab

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestNative6 proves the native-IPv6 variant: the lan host reaches srv6
// from its own address, with full 1500-byte packets both ways, and inet
// routes the way back through the CGN's link rather than the relay.
func TestNative6(t *testing.T) {
	l := newForTest(t, Options{Native6: true})
	srv, err := l.NS(Srv6).StartEcho(netip.AddrPortFrom(netip.IPv6Unspecified(), EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	to := netip.AddrPortFrom(Srv6Addr, EchoPort)
	if _, err := l.NS(LAN).EchoTCP(ctx, to, "native6-tcp"); err != nil {
		t.Fatalf("tcp lan → srv6: %v", err)
	}
	if p, ok := srv.PeerOf("native6-tcp"); !ok || p.Remote.Addr() != SiteHost6Addr {
		t.Errorf("srv6 saw %+v (found %v), want %v", p, ok, SiteHost6Addr)
	}
	if _, err := l.NS(LAN).EchoUDPPacket(ctx, to, "native6-1500", MTU); err != nil {
		t.Errorf("1500-byte UDP lan → srv6 and back: %v", err)
	}
	// inet sends the host's replies down to the CGN's link, not to the
	// relay (whose route covers all of SitePrefixes).
	rs, err := l.NS(Inet).Netlink().RouteGet(SiteHost6Addr.AsSlice())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || !rs[0].Gw.Equal(NativeCGN6.AsSlice()) {
		t.Errorf("inet routes %v via %+v, want via %v", SiteHost6Addr, rs, NativeCGN6)
	}
}
