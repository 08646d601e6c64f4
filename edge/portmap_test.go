package edge

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/portmap"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
)

// A LAN host's mapping is a dynamic port forward of the public IPv4 (or
// an allow rule for its IPv6 address): Policy.Decide accepts the flows
// it names and sends them to the host, inside the port share, never on
// a static forward's port, and not after it ends; an outbound flow never
// takes its port.
func TestPortMappingForwards(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.10")
	prefix := netip.MustParsePrefix("2001:db8:5::/64")
	n := newSiteNAT()
	static := []Forward{{Proto: session.TCP, Ports: ports.Range{First: 8007, Last: 8007}, To: netip.MustParseAddrPort("192.0.2.3:80")}}
	if err := n.grant(public, ports.Range{First: 8000, Last: 8999}, static); err != nil {
		t.Fatal(err)
	}
	be := newMapBackend(n, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tab := portmap.NewTable(portmap.Policy{}, be, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pol := NewPolicy(nil, static)
	pol.dynamic = be.lookup
	host := netip.MustParseAddr("192.0.2.2")
	now := time.Now()
	ask := func(port uint16, exact bool) (portmap.Mapping, portmap.Reason) {
		return tab.Map(portmap.Request{Via: portmap.ViaNATPMP, Client: host, Proto: portmap.TCP,
			Internal: netip.AddrPortFrom(host, port), Port: port, Exact: exact, Lifetime: time.Minute}, now)
	}
	// The static forward's port: refused exactly, the nearest otherwise.
	if _, why := ask(8007, true); why != portmap.PortUnavailable {
		t.Errorf("static forward's port: %v", why)
	}
	m, why := ask(8007, false)
	if why != portmap.OK || m.External.Port() == 8007 {
		t.Fatalf("near the static forward: %+v %v", m.External, why)
	}
	// Outside the share (8000-8999): the nearest port inside it.
	far, why := ask(22000, false)
	if why != portmap.OK || far.External.Port() != 8999 {
		t.Errorf("outside the share: %v %v, want port 8999", far.External, why)
	}
	remote := netip.MustParseAddrPort("198.51.100.10:40000")
	in := session.Flow{Proto: session.TCP, Site: m.External, Remote: remote}
	if to, why := pol.Decide(in, prefix, public); why != Accepted || to != m.Internal {
		t.Errorf("offer to the mapped port: %v %v, want %v", to, why, m.Internal)
	}
	udp := in
	udp.Proto = session.UDP
	if _, why := pol.Decide(udp, prefix, public); why != NoRule {
		t.Errorf("UDP to a TCP mapping: %v", why)
	}
	// An outbound flow from another host's same port takes another one.
	out, err := n.outbound(session.Flow{Proto: session.TCP, Site: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.4"), m.External.Port()), Remote: remote})
	if err != nil || out.Site.Port() == m.External.Port() {
		t.Errorf("outbound took the mapped port: %v %v", out.Site, err)
	}
	// Deleted: refused again, the port back in the pool.
	if _, why := tab.Unmap(portmap.ViaNATPMP, host, portmap.TCP, m.Internal, [12]byte{}); why != portmap.OK {
		t.Fatal(why)
	}
	if _, why := pol.Decide(in, prefix, public); why != NoRule {
		t.Errorf("offer after the mapping ended: %v", why)
	}
	if err := n.claimMapped(session.TCP, m.External, m.Internal); err != nil {
		t.Errorf("the port did not go back to the pool: %v", err)
	}
	n.releaseMapped(session.TCP, m.External, m.Internal)

	// IPv6: a pinhole for the host's address and port, with its filter.
	h6 := netip.MustParseAddrPort("[2001:db8:5::10]:443")
	if _, why := tab.Map(portmap.Request{Via: portmap.ViaPCP, Client: h6.Addr(), Proto: portmap.TCP, Internal: h6, Lifetime: time.Minute,
		Filters: []portmap.Filter{{Remote: netip.MustParsePrefix("2001:db8:6::/64")}}}, now); why != portmap.OK {
		t.Fatal(why)
	}
	in6 := session.Flow{Proto: session.TCP, Site: h6, Remote: netip.MustParseAddrPort("[2001:db8:6::2]:5555")}
	if to, why := pol.Decide(in6, prefix, public); why != Accepted || to != h6 {
		t.Errorf("pinhole: %v %v", to, why)
	}
	in6.Remote = netip.MustParseAddrPort("[2001:db8:7::2]:5555")
	if _, why := pol.Decide(in6, prefix, public); why != NoRule {
		t.Errorf("pinhole from outside its filter: %v", why)
	}
}

func TestPortMappingConfig(t *testing.T) {
	p, err := PortMapping{}.parse("port_mapping")
	if err != nil || p.On() || p.UPnPPort != 5000 || p.Policy.MinLifetime != 2*time.Minute || p.Policy.MaxLifetime != 24*time.Hour ||
		p.Policy.PerHost != 32 || p.Policy.PerSite != 256 || p.Policy.Ports != (portmap.PortRange{First: 1024, Last: 65535}) {
		t.Errorf("defaults: %+v %v", p, err)
	}
	for _, bad := range []PortMapping{
		{MinLifetime: "1h", MaxLifetime: "1m"},
		{MaxLifetime: "200h"},
		{PerHost: 10, PerSite: 5},
		{PerSite: 5000},
		{Allowed: []string{"192.0.2.0/33"}},
		{Ports: "0-10"},
	} {
		if _, err := bad.parse("port_mapping"); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// A pinned mapping reads back as it was written (but its ID, which a
// restored mapping gets anew).
func TestMappingPinEncoding(t *testing.T) {
	for _, m := range []portmap.Mapping{
		{Proto: portmap.UDP, Internal: netip.MustParseAddrPort("192.0.2.2:7"), External: netip.MustParseAddrPort("203.0.113.10:9100"),
			Client: netip.MustParseAddr("192.0.2.2"), Via: portmap.ViaNATPMP, Expires: time.Unix(1900000000, 0), Description: "game"},
		{Proto: portmap.TCP, Internal: netip.MustParseAddrPort("[2001:db8:5::10]:443"), External: netip.MustParseAddrPort("[2001:db8:5::10]:443"),
			Client: netip.MustParseAddr("2001:db8:5::10"), Via: portmap.ViaPCP, Nonce: [12]byte{1, 2, 3}, Expires: time.Unix(1900000001, 0),
			Filters: []portmap.Filter{{Remote: netip.MustParsePrefix("198.51.100.0/24"), Port: 80}, {Remote: netip.MustParsePrefix("2001:db8:6::/64")}}},
	} {
		got, err := decodeMapping(mapPinKey(m), encodeMapping(m))
		if err != nil {
			t.Fatal(err)
		}
		if got.Proto != m.Proto || got.Internal != m.Internal || got.External != m.External || got.Client != m.Client ||
			got.Via != m.Via || got.Nonce != m.Nonce || !got.Expires.Equal(m.Expires) || got.Description != m.Description ||
			len(got.Filters) != len(m.Filters) || len(m.Filters) > 0 && got.Filters[0] != m.Filters[0] {
			t.Errorf("read back\n%+v\nwant\n%+v", got, m)
		}
	}
}

// A pin outlives the program that wrote it: whatever its bytes, decoding
// never panics and never yields a protocol or Via the table does not know.
func FuzzMappingPin(f *testing.F) {
	m := portmap.Mapping{Proto: portmap.UDP, Internal: netip.MustParseAddrPort("192.0.2.2:7"), External: netip.MustParseAddrPort("203.0.113.10:9100"),
		Via: portmap.ViaNATPMP, Filters: []portmap.Filter{{Remote: netip.MustParsePrefix("198.51.100.0/24")}}}
	f.Add(mapPinKey(m), encodeMapping(m))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		got, err := decodeMapping(k, v)
		if err == nil && (got.Proto != portmap.TCP && got.Proto != portmap.UDP || len(got.Filters) > portmap.MaxFilters) {
			t.Fatalf("decoded %+v", got)
		}
	})
}

// A mapped endpoint's outbound flows leave from the mapped port (a PCP or
// UPnP client announces that port to its peers); the port stays held
// while such a flow lives after the mapping ends, and goes back to the
// pool with the flow.
func TestPortMappingOutbound(t *testing.T) {
	public := netip.MustParseAddr("203.0.113.10")
	n := newSiteNAT()
	if err := n.grant(public, ports.Range{First: 1024, Last: 65535}, nil); err != nil {
		t.Fatal(err)
	}
	in := netip.MustParseAddrPort("192.0.2.2:6881")
	ext := netip.AddrPortFrom(public, 9100)
	if err := n.claimMapped(session.UDP, ext, in); err != nil {
		t.Fatal(err)
	}
	f, err := n.outbound(session.Flow{Proto: session.UDP, Site: in, Remote: netip.MustParseAddrPort("198.51.100.10:6881")})
	if err != nil || f.Site != ext {
		t.Fatalf("outbound from the mapped endpoint left from %v (%v), want %v", f.Site, err, ext)
	}
	n.releaseMapped(session.UDP, ext, in)
	if err := n.claimMapped(session.UDP, ext, netip.MustParseAddrPort("192.0.2.3:1")); err == nil {
		t.Error("the port went back to the pool while an outbound flow still used it")
	}
	n.release(f)
	if err := n.claimMapped(session.UDP, ext, netip.MustParseAddrPort("192.0.2.3:1")); err != nil {
		t.Errorf("the port did not go back with the flow: %v", err)
	}
	// A restored binding of the endpoint on the port is adopted.
	n2 := newSiteNAT()
	n2.restore(session.Flow{Proto: session.TCP, Site: ext, Remote: netip.MustParseAddrPort("198.51.100.10:80")}, in, false)
	if err := n2.grant(public, ports.Range{First: 1024, Last: 65535}, nil); err != nil {
		t.Fatal(err)
	}
	if err := n2.claimMapped(session.TCP, ext, in); err != nil {
		t.Errorf("a restored binding on the mapped port: %v", err)
	}
}
