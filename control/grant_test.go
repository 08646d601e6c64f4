package control

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

func TestSiteOwns(t *testing.T) {
	g := &proto.Welcome{
		Prefix:      netip.MustParsePrefix("2001:db8:5::/48"),
		PublicIPv4:  netip.MustParseAddr("198.51.100.20"),
		PublicPorts: proto.PortRange{First: 1024, Last: 2047},
	}
	cases := []struct {
		site string
		want bool
	}{
		{"[2001:db8:5:1::10]:40000", true},
		{"[2001:db8:6::10]:40000", false},
		{"198.51.100.20:1024", true},
		{"198.51.100.20:2047", true},
		{"198.51.100.20:2048", false}, // outside the A+P port set
		{"198.51.100.20:1023", false},
		{"198.51.100.21:1500", false},
	}
	for _, c := range cases {
		if got := siteOwns(g, netip.MustParseAddrPort(c.site)); got != c.want {
			t.Errorf("%s: %v, want %v", c.site, got, c.want)
		}
	}
	whole := &proto.Welcome{PublicIPv4: netip.MustParseAddr("198.51.100.20")}
	if !siteOwns(whole, netip.MustParseAddrPort("198.51.100.20:80")) {
		t.Error("no port set means the whole address")
	}
	if siteOwns(whole, netip.MustParseAddrPort("[2001:db8::1]:80")) {
		t.Error("no prefix granted, yet an IPv6 site address passed")
	}
}

// TestCheckFlow: a flow's site end must be the grant's, and its remote
// one a packet may go to: martian remotes are refused before they take
// a carrier port.
func TestCheckFlow(t *testing.T) {
	g := &proto.Welcome{Prefix: netip.MustParsePrefix("2001:db8:5::/48"), PublicIPv4: netip.MustParseAddr("198.51.100.20")}
	cases := []struct {
		site, remote string
		want         proto.Code
	}{
		{"[2001:db8:5::10]:40000", "[2001:db8:99::1]:443", proto.CodeOK},
		{"198.51.100.20:40000", "203.0.113.9:53", proto.CodeOK},
		{"[2001:db8:6::10]:40000", "[2001:db8:99::1]:443", proto.CodeAddressNotGranted},
		{"[2001:db8:5::10]:40000", "[::1]:443", proto.CodeRefused},
		{"[2001:db8:5::10]:40000", "[::ffff:127.0.0.1]:443", proto.CodeRefused},
		{"[2001:db8:5::10]:40000", "[ff0e::1]:443", proto.CodeRefused},
		{"[2001:db8:5::10]:40000", "[fe80::1]:443", proto.CodeRefused},
		{"198.51.100.20:40000", "127.0.0.1:53", proto.CodeRefused},
		{"198.51.100.20:40000", "0.0.0.0:53", proto.CodeRefused},
		{"198.51.100.20:40000", "224.0.0.251:5353", proto.CodeRefused},
		{"198.51.100.20:40000", "169.254.169.254:80", proto.CodeRefused},
		{"198.51.100.20:40000", "255.255.255.255:67", proto.CodeRefused},
	}
	for _, c := range cases {
		f := session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort(c.site), Remote: netip.MustParseAddrPort(c.remote)}
		if got := checkFlow(g, f); got != c.want {
			t.Errorf("%v: %v, want %v", f, got, c.want)
		}
	}
}

func TestCheckHello(t *testing.T) {
	g := &proto.Welcome{Prefix: netip.MustParsePrefix("2001:db8:5::/48"), PublicIPv4: netip.MustParseAddr("198.51.100.20")}
	cases := []struct {
		name string
		h    proto.Hello
		want proto.Code
	}{
		{"no wishes", proto.Hello{}, proto.CodeOK},
		{"its prefix", proto.Hello{WantPrefix: netip.MustParsePrefix("2001:db8:5::/48")}, proto.CodeOK},
		{"a part of it", proto.Hello{WantPrefix: netip.MustParsePrefix("2001:db8:5:100::/56")}, proto.CodeOK},
		{"wider than it", proto.Hello{WantPrefix: netip.MustParsePrefix("2001:db8::/32")}, proto.CodePrefixNotGranted},
		{"another", proto.Hello{WantPrefix: netip.MustParsePrefix("2001:db8:6::/48")}, proto.CodePrefixNotGranted},
		{"its IPv4", proto.Hello{WantIPv4: netip.MustParseAddr("198.51.100.20")}, proto.CodeOK},
		{"another IPv4", proto.Hello{WantIPv4: netip.MustParseAddr("198.51.100.21")}, proto.CodeAddressNotGranted},
	}
	for _, c := range cases {
		if got := checkHello(&c.h, g); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
