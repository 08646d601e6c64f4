package xdp

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session"
)

// TestPairInverses: EdgeFlow and RelayFlow read back, from the out
// mapping EdgePair and RelayPair made, the flow and carrier they were
// made for, for every kind of carrier a flow rides: IPv6 TCP and UDP
// natively, ICMPv6 echo on an ICMP echo carrier, other protocols wrapped
// in UDP, and the site's IPv4 flows (TCP, UDP, ICMP echo) by NAPT. What
// the entries do not hold comes back zero: the edge's carrier has no
// public side, the relay's no edge side, and an ICMP echo carrier no
// relay port. A mapping no pair makes (its action changed) is refused.
func TestPairInverses(t *testing.T) {
	edge, relay, public := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("198.51.100.6"), netip.MustParseAddr("203.0.113.9")
	site6, remote6 := netip.MustParseAddr("2001:db8:5::2"), netip.MustParseAddr("2001:db8:6::2")
	site4, remote4 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.10")
	for _, tc := range []struct {
		name         string
		flow         session.Proto
		site, remote netip.Addr
		sport, dport uint16
		carrier      session.Proto
	}{
		{"tcp6", session.TCP, site6, remote6, 41000, 443, session.TCP},
		{"udp6", session.UDP, site6, remote6, 41001, 53, session.UDP},
		{"echo6", session.ICMPv6, site6, remote6, 7, 0, session.ICMP},
		{"icmp6-wrapped", session.ICMPv6, site6, remote6, 0, 0, session.UDP},
		{"gre-wrapped", 47, site6, remote6, 0, 0, session.UDP},
		{"tcp4", session.TCP, site4, remote4, 41002, 80, session.TCP},
		{"udp4", session.UDP, site4, remote4, 41003, 123, session.UDP},
		{"echo4", session.ICMP, site4, remote4, 9, 0, session.ICMP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := session.Flow{Proto: tc.flow, Site: netip.AddrPortFrom(tc.site, tc.sport), Remote: netip.AddrPortFrom(tc.remote, tc.dport)}
			c := session.Carrier{Proto: tc.carrier, Edge: netip.AddrPortFrom(edge, 61000),
				Relay: netip.AddrPortFrom(relay, 20000), Public: netip.AddrPortFrom(public, 40000)}
			held := c // what the entries hold of it
			if c.Proto == session.ICMP {
				held.Relay = netip.AddrPortFrom(relay, 0)
			}

			out, _, err := EdgePair(f, c)
			if err != nil {
				t.Fatal(err)
			}
			gf, gc, ok := EdgeFlow(out)
			want := held
			want.Public = netip.AddrPort{}
			if !ok || gf != f || gc != want {
				t.Errorf("EdgeFlow: %v %v %v, want %v %v", gf, gc, ok, f, want)
			}
			bad := out
			bad.Entry.Action++
			if _, _, ok := EdgeFlow(bad); ok {
				t.Error("EdgeFlow read a mapping no pair makes")
			}

			out, _, err = RelayPair(f, c)
			if err != nil {
				t.Fatal(err)
			}
			gf, gc, ok = RelayFlow(out)
			want = held
			want.Edge = netip.AddrPort{}
			if !ok || gf != f || gc != want {
				t.Errorf("RelayFlow: %v %v %v, want %v %v", gf, gc, ok, f, want)
			}
			bad = out
			bad.Entry.Action++
			if _, _, ok := RelayFlow(bad); ok {
				t.Error("RelayFlow read a mapping no pair makes")
			}
		})
	}
}
