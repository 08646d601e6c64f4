package portmap

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/portmap/natpmp"
	"github.com/unmap-dev/unmap/portmap/pcp"
)

// clientBackend is a PerClient backend: each client its own address and
// port ranges (the relay's CGNAT gives each subscriber its blocks), and
// an endpoint already mapped to a port (an implicit mapping) pins it.
type clientBackend struct {
	*MemBackend
	addr   map[netip.Addr]netip.Addr
	ranges map[netip.Addr][]PortRange
	pinned map[netip.AddrPort]uint16
}

func (b *clientBackend) Place4(client netip.Addr, proto Proto, in netip.AddrPort) (netip.Addr, []PortRange, Reason) {
	a, ok := b.addr[client]
	if !ok {
		return netip.Addr{}, nil, NoExternal
	}
	if p, ok := b.pinned[in]; ok && proto != 0 {
		return a, []PortRange{{p, p}}, OK
	}
	return a, b.ranges[client], OK
}

var (
	pubA = netip.MustParseAddr("198.51.100.10")
	pubB = netip.MustParseAddr("198.51.100.11")
)

func newClientServer(t *testing.T) (*Server, *clientBackend) {
	be := &clientBackend{MemBackend: NewMemBackend(netip.Addr{}, 0, 0),
		addr:   map[netip.Addr]netip.Addr{hostA: pubA, hostB: pubB},
		ranges: map[netip.Addr][]PortRange{hostA: {{40000, 40063}, {40512, 40575}}, hostB: {{40064, 40127}}},
		pinned: map[netip.AddrPort]uint16{netip.AddrPortFrom(hostA, 5555): 40020}}
	tab := NewTable(Policy{}, be, quiet())
	if !tab.PerClient() {
		t.Fatal("the table does not see the PerClient backend")
	}
	return NewServer(Config{PCP: true, NATPMP: true, Log: quiet()}, tab), be
}

// TestPerClient: behind a PerClient backend each client maps ports of
// its own ranges on its own address: the asked port when in them, else
// the nearest one in them (across a gap), an exact request outside them
// refused; an endpoint already mapped keeps its port; NAT-PMP's address
// is the client's; a PCP FILTER (UNSUPP_OPTION) and a PEER
// (UNSUPP_OPCODE) are refused, since such a backend admits anyone; a
// client with no address gets NETWORK_FAILURE.
func TestPerClient(t *testing.T) {
	s, be := newClientServer(t)
	src := netip.AddrPortFrom(hostA, 40000)
	nonce := pcp.NewNonce()
	mapReq := func(in, ext uint16) *pcp.Message {
		return &pcp.Message{Opcode: pcp.OpMap, Lifetime: 600, Client: hostA,
			Map: pcp.Map{Nonce: nonce, Protocol: 6, InternalPort: in, ExternalPort: ext}}
	}
	for _, c := range []struct {
		in, ext, want uint16
		exact         bool
		result        pcp.Result
	}{
		{in: 80, ext: 40010, want: 40010},
		{in: 81, ext: 40300, want: 40512},                                    // in the gap: the second range's first port is nearer
		{in: 82, ext: 40300, exact: true, result: pcp.CannotProvideExternal}, // outside A's ranges
		{in: 83, ext: 40070, exact: true, result: pcp.CannotProvideExternal}, // B's
		{in: 84, ext: 40010, want: 40011},                                    // taken by 80: the nearest
		{in: 5555, ext: 40030, want: 40020},                                  // mapped already
		{in: 85, ext: 0, want: 40000},                                        // asks for 85, below A's ports: the lowest of them
	} {
		m := mapReq(c.in, c.ext)
		m.PreferFailure = c.exact
		r := pcpDo(t, s, src, m)
		if r.Result != c.result || c.result == pcp.Success && (r.Map.ExternalAddr != pubA || r.Map.ExternalPort != c.want) {
			t.Errorf("internal %d asking %d (exact %v): %v %v:%d, want %v %d", c.in, c.ext, c.exact, r.Result, r.Map.ExternalAddr, r.Map.ExternalPort, c.result, c.want)
		}
	}
	filtered := mapReq(90, 40040)
	filtered.Filters = []pcp.Filter{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}
	if r := pcpDo(t, s, src, filtered); r.Result != pcp.UnsuppOption {
		t.Errorf("FILTER: %v, want UNSUPP_OPTION", r.Result)
	}
	peer := mapReq(91, 40041)
	peer.Opcode = pcp.OpPeer
	peer.Peer = pcp.Peer{RemotePort: 53, RemoteAddr: netip.MustParseAddr("203.0.113.1")}
	if r := pcpDo(t, s, src, peer); r.Result != pcp.UnsuppOpcode {
		t.Errorf("PEER: %v, want UNSUPP_OPCODE", r.Result)
	}
	if be.Len() != 5 {
		t.Errorf("%d mappings in effect, want 5", be.Len())
	}
	// NAT-PMP: each client's own address; none for a stranger.
	for client, want := range map[netip.Addr]netip.Addr{hostA: pubA, hostB: pubB, netip.MustParseAddr("192.0.2.99"): {}} {
		out := s.HandleUDP((&natpmp.Request{Opcode: natpmp.OpExternalAddress}).Append(nil), netip.AddrPortFrom(client, 5350), t0)
		r, err := natpmp.ParseResponse(out)
		if err != nil || r.External != want && want.IsValid() || !want.IsValid() && r.Result != natpmp.NetworkFailure {
			t.Errorf("NAT-PMP address for %v: %+v %v, want %v", client, r, err, want)
		}
	}
	r := pcpDo(t, s, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.99"), 1),
		&pcp.Message{Opcode: pcp.OpMap, Lifetime: 600, Client: netip.MustParseAddr("192.0.2.99"), Map: pcp.Map{Nonce: nonce, Protocol: 17, InternalPort: 9}})
	if r.Result != pcp.NetworkFailure {
		t.Errorf("a client with no address: %v", r.Result)
	}
}
