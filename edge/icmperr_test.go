package edge

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
)

// routerError is a router's ICMPv6 time exceeded to dst about a UDP
// packet from host:sport to remote:dport, as the relay sends it.
func routerError(dst, host netip.Addr, sport uint16, remote netip.Addr, dport uint16, hop uint8) *proto.ICMPError {
	router := netip.MustParseAddr("2001:db8:1::1").As16()
	d, h, r := dst.As16(), host.As16(), remote.As16()
	p := []byte{0x60, 0, 0, 0, 0, 56, 58, hop}
	p = append(append(p, router[:]...), d[:]...)
	p = append(p, 3, 0, 0, 0, 0, 0, 0, 0)
	p = append(p, 0x60, 0, 0, 0, 0, 8, 17, 1)
	p = append(append(p, h[:]...), r[:]...)
	p = binary.BigEndian.AppendUint16(p, sport)
	p = binary.BigEndian.AppendUint16(p, dport)
	return &proto.ICMPError{Packet: append(p, 0, 8, 0, 0)}
}

// The edge refuses, and counts, every relayed error that is not about one
// of its flows; one that is reaches the injector (none in this test).
func TestICMPErrorRefusals(t *testing.T) {
	c := Config{Site: "home", Relay: "relay:443", LAN: "lan", WAN: "wan", TLS: confTLS("x")}
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(s, netip.MustParseAddr("100.64.0.2"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	host, other := netip.MustParseAddr("2001:db8:5::2"), netip.MustParseAddr("2001:db8:7::2")
	remote := netip.MustParseAddr("2001:db8:6::2")
	f := session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(host, 40000), Remote: netip.AddrPortFrom(remote, 33434)}
	if err := a.flows.Add(f, session.Carrier{Proto: session.UDP}, flows.StateOpen); err != nil {
		t.Fatal(err)
	}
	a.Connected(&proto.Welcome{Prefix: netip.MustParsePrefix("2001:db8:5::/56")})

	a.ICMPError(routerError(other, other, 40000, remote, 33434, 64))
	a.ICMPError(routerError(host, netip.MustParseAddr("2001:db8:5::3"), 40000, remote, 33434, 64))
	a.ICMPError(routerError(host, host, 40001, remote, 33434, 64))
	a.ICMPError(routerError(host, host, 40000, remote, 33434, 1))
	bad := routerError(host, host, 40000, remote, 33434, 64)
	bad.Packet[40] = 4 // parameter problem: not an error unmap relays
	a.ICMPError(bad)
	a.ICMPError(routerError(host, host, 40000, remote, 33434, 64))
	want := map[string]uint64{
		"icmp-err-not-prefix": 2, "icmp-err-not-flow": 1, "icmp-err-hop-limit": 1,
		"icmp-err-unusable": 1, "icmp-err-no-datapath": 1,
	}
	got := a.Counts()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
