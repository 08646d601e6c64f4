package edge

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session"
)

func TestPolicy(t *testing.T) {
	s, err := Load("../examples/edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := NewPolicy(s.Allow, s.Forwards)
	prefix := netip.MustParsePrefix("2001:db8:5::/56")
	public := netip.MustParseAddr("203.0.113.10")
	remote6 := netip.MustParseAddrPort("[2001:db8:6::2]:40000")
	remote4 := netip.MustParseAddrPort("198.51.100.10:40000")
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name   string
		flow   session.Flow
		to     string
		reason Refusal
	}{
		{"ssh to the named host", session.Flow{Proto: session.TCP, Site: ap("[2001:db8:5::10]:22"), Remote: remote6}, "[2001:db8:5::10]:22", Accepted},
		{"other port of that host", session.Flow{Proto: session.TCP, Site: ap("[2001:db8:5::10]:23"), Remote: remote6}, "", NoRule},
		{"udp to the named host", session.Flow{Proto: session.UDP, Site: ap("[2001:db8:5::10]:22"), Remote: remote6}, "", NoRule},
		{"any proto to the open /80", session.Flow{Proto: 132, Site: ap("[2001:db8:5:0:1::7]:9"), Remote: remote6}, "[2001:db8:5:0:1::7]:9", Accepted},
		{"ping anywhere on the LAN", session.Flow{Proto: session.ICMPv6, Site: ap("[2001:db8:5::99]:7"), Remote: remote6}, "[2001:db8:5::99]:7", Accepted},
		{"tcp elsewhere on the LAN", session.Flow{Proto: session.TCP, Site: ap("[2001:db8:5::99]:80"), Remote: remote6}, "", NoRule},
		{"not the site's prefix", session.Flow{Proto: session.ICMPv6, Site: ap("[2001:db8:7::1]:7"), Remote: remote6}, "", NotOurAddress},
		{"forwarded https", session.Flow{Proto: session.TCP, Site: ap("203.0.113.10:443"), Remote: remote4}, "192.0.2.2:443", Accepted},
		{"forwarded udp range keeps the offset", session.Flow{Proto: session.UDP, Site: ap("203.0.113.10:51825"), Remote: remote4}, "192.0.2.3:51825", Accepted},
		{"udp on the tcp forward", session.Flow{Proto: session.UDP, Site: ap("203.0.113.10:443"), Remote: remote4}, "", NoRule},
		{"icmp to the public ipv4", session.Flow{Proto: session.ICMP, Site: ap("203.0.113.10:1"), Remote: remote4}, "", NoRule},
		{"another ipv4", session.Flow{Proto: session.TCP, Site: ap("203.0.113.11:443"), Remote: remote4}, "", NotOurAddress},
	} {
		to, why := p.Decide(tc.flow, prefix, public)
		got := ""
		if to.IsValid() {
			got = to.String()
		}
		if got != tc.to || why != tc.reason {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, why, tc.to, tc.reason)
		}
	}
	c := p.Counts()
	if c["accepted"] != 5 || c["no-rule"] != 5 || c["not-our-address"] != 2 {
		t.Errorf("counts %v", c)
	}
}
