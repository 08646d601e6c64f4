package portmap

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

var (
	public = netip.MustParseAddr("203.0.113.5")
	hostA  = netip.MustParseAddr("192.0.2.2")
	hostB  = netip.MustParseAddr("192.0.2.3")
	host6  = netip.MustParseAddr("2001:db8:5::10")
	t0     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTable(pol Policy) (*Table, *MemBackend) {
	be := NewMemBackend(public, 1024, 65535)
	return NewTable(pol, be, quiet()), be
}

func req(client netip.Addr, proto Proto, port uint16) Request {
	return Request{Via: ViaNATPMP, Client: client, Proto: proto, Internal: netip.AddrPortFrom(client, port), Lifetime: time.Hour}
}

// The policy: the asked port when free, else the nearest; never a
// reserved or busy one; exact requests fail instead.
func TestPlacement(t *testing.T) {
	tab, be := newTable(Policy{Reserved: []PortRange{{8081, 8081}}})
	m, why := tab.Map(req(hostA, TCP, 8080), t0)
	if why != OK || m.External != netip.AddrPortFrom(public, 8080) {
		t.Fatalf("first: %v %v", m.External, why)
	}
	// hostB asks for 8080 too: 8081 is reserved, 8079 is next.
	m, why = tab.Map(req(hostB, TCP, 8080), t0)
	if why != OK || m.External.Port() != 8079 {
		t.Errorf("second: %v %v, want port 8079", m.External, why)
	}
	// The same port for UDP is free: protocols are separate.
	if m, why = tab.Map(req(hostB, UDP, 8080), t0); why != OK || m.External.Port() != 8080 {
		t.Errorf("udp: %v %v", m.External, why)
	}
	be.Busy[9000], be.Busy[9001] = true, true
	r := req(hostB, TCP, 9000)
	if m, why = tab.Map(r, t0); why != OK || m.External.Port() != 8999 {
		t.Errorf("busy: %v %v, want 8999", m.External, why)
	}
	r = req(hostA, TCP, 9001)
	r.Exact = true
	if _, why = tab.Map(r, t0); why != PortUnavailable {
		t.Errorf("exact on a busy port: %v", why)
	}
	r = req(hostA, UDP, 8081)
	r.Exact = true
	if _, why = tab.Map(r, t0); why != PortUnavailable {
		t.Errorf("exact on a reserved port: %v", why)
	}
	// Below the policy's range: the nearest port in it.
	if m, why = tab.Map(req(hostA, UDP, 80), t0); why != OK || m.External.Port() != 1024 {
		t.Errorf("port 80: %v %v", m.External, why)
	}
	if got := tab.Counts()["refused-port-unavailable"]; got != 2 {
		t.Errorf("refused-port-unavailable %d, want 2", got)
	}
}

func TestRefusals(t *testing.T) {
	tab, be := newTable(Policy{PerHost: 2, PerSite: 3, Allowed: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:5::/64")}})
	third := req(hostA, TCP, 1)
	third.Internal = netip.AddrPortFrom(hostB, 1)
	for _, c := range []struct {
		name string
		r    Request
		want Reason
	}{
		{"another host", third, NotSelf},
		{"outside the allowed ranges", req(netip.MustParseAddr("198.51.100.7"), TCP, 1), NotAllowed},
		{"sctp", req(hostA, 132, 1), UnsupportedProto},
		{"port 0", req(hostA, TCP, 0), Malformed},
		{"a", req(hostA, TCP, 2000), OK},
		{"a renews", req(hostA, TCP, 2000), OK},
		{"b", req(hostA, TCP, 2001), OK},
		{"host quota", req(hostA, TCP, 2002), HostQuota},
		{"c", req(hostB, TCP, 2002), OK},
		{"site quota", req(hostB, TCP, 2003), SiteQuota},
	} {
		if _, why := tab.Map(c.r, t0); why != c.want {
			t.Errorf("%s: %v, want %v", c.name, why, c.want)
		}
	}
	if be.Len() != 3 {
		t.Errorf("backend holds %d, want 3", be.Len())
	}
	// Another host cannot delete or take over hostA's mapping.
	if _, why := tab.Unmap(ViaNATPMP, hostB, TCP, netip.AddrPortFrom(hostA, 2000), [12]byte{}); why != NotOwner {
		t.Errorf("delete by another host: %v", why)
	}
	if why := tab.UnmapExternal(hostB, TCP, 2000); why != NotOwner {
		t.Errorf("upnp delete by another host: %v", why)
	}
	c := tab.Counts()
	for _, name := range []string{"not-self", "not-allowed", "unsupported-proto", "malformed", "host-quota", "site-quota"} {
		if c["refused-"+name] != 1 {
			t.Errorf("refused-%s = %d, want 1", name, c["refused-"+name])
		}
	}
	if c["refused-not-owner"] != 2 || c["granted"] != 3 {
		t.Errorf("counts %v", c)
	}
	// No public IPv4: IPv4 refused, IPv6 pinholes still made.
	be.Public = netip.Addr{}
	tab2 := NewTable(Policy{}, be, quiet())
	if _, why := tab2.Map(req(hostA, UDP, 5), t0); why != NoExternal {
		t.Errorf("no public IPv4: %v", why)
	}
	if m, why := tab2.Map(req(host6, UDP, 5), t0); why != OK || m.External != m.Internal {
		t.Errorf("pinhole: %+v %v", m, why)
	}
}

// A PCP mapping belongs to its nonce; a PEER renews a MAP without
// narrowing it; a MAP without FILTER clears the filters.
func TestNonceAndPeer(t *testing.T) {
	tab, be := newTable(Policy{})
	r := Request{Via: ViaPCP, Client: host6, Proto: UDP, Internal: netip.AddrPortFrom(host6, 5000), Lifetime: time.Minute, Nonce: [12]byte{1},
		Filters: []Filter{{Remote: netip.MustParsePrefix("2001:db8:6::/64")}}}
	if _, why := tab.Map(r, t0); why != OK {
		t.Fatal(why)
	}
	remote := netip.MustParseAddrPort("[2001:db8:7::1]:1")
	if _, ok := be.Lookup(UDP, r.Internal, remote); ok {
		t.Error("the filter admits a remote outside it")
	}
	other := r
	other.Nonce = [12]byte{2}
	if _, why := tab.Map(other, t0); why != NotOwner {
		t.Errorf("another nonce: %v", why)
	}
	peer := r
	peer.Peer, peer.Filters, peer.Lifetime = true, []Filter{{Remote: netip.PrefixFrom(remote.Addr(), 128)}}, time.Second
	if m, why := tab.Map(peer, t0); why != OK || len(m.Filters) != 1 || m.Expires != t0.Add(time.Minute) {
		t.Errorf("peer renewal: %+v %v", m, why)
	}
	r.Filters = nil
	if _, why := tab.Map(r, t0); why != OK {
		t.Fatal(why)
	}
	if _, ok := be.Lookup(UDP, r.Internal, remote); !ok {
		t.Error("a MAP without FILTER kept the old filter")
	}
}

func TestLifetimeAndExpiry(t *testing.T) {
	tab, be := newTable(Policy{MinLifetime: time.Minute, MaxLifetime: time.Hour})
	p := tab.Policy()
	if p.Lifetime(time.Second) != time.Minute || p.Lifetime(48*time.Hour) != time.Hour || p.Lifetime(10*time.Minute) != 10*time.Minute {
		t.Error("lifetime not clamped")
	}
	r := req(hostA, UDP, 4000)
	r.Lifetime = p.Lifetime(time.Second)
	if _, why := tab.Map(r, t0); why != OK {
		t.Fatal(why)
	}
	if tab.Expire(t0.Add(59*time.Second)) != 0 || be.Len() != 1 {
		t.Error("expired early")
	}
	if tab.Expire(t0.Add(time.Minute)) != 1 || be.Len() != 0 || len(tab.Mappings()) != 0 {
		t.Error("not expired at its lifetime")
	}
	if tab.Counts()["expired"] != 1 {
		t.Error("expiry not counted")
	}
}
