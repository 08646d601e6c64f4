package portmap

import (
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/portmap/natpmp"
	"github.com/unmap-dev/unmap/portmap/pcp"
	"github.com/unmap-dev/unmap/portmap/upnp"
)

func newServer(pol Policy, cfg Config) (*Server, *MemBackend) {
	tab, be := newTable(pol)
	cfg.Log = quiet()
	return NewServer(cfg, tab), be
}

func pcpDo(t *testing.T, s *Server, src netip.AddrPort, m *pcp.Message) *pcp.Message {
	t.Helper()
	out := s.HandleUDP(m.Append(nil), src, t0)
	if out == nil {
		t.Fatalf("no answer to %+v", m)
	}
	r, err := pcp.ParseResponse(out)
	if err != nil {
		t.Fatalf("answer %x: %v", out, err)
	}
	return r
}

// PCP through the server: MAP grants the asked port, result codes for
// each refusal, lifetime 0 deletes, ANNOUNCE answers with the epoch.
func TestPCP(t *testing.T) {
	s, be := newServer(Policy{PerHost: 1}, Config{PCP: true})
	src := netip.AddrPortFrom(hostA, 40000)
	nonce := pcp.NewNonce()
	mapReq := func(port uint16, lifetime uint32) *pcp.Message {
		return &pcp.Message{Opcode: pcp.OpMap, Lifetime: lifetime, Client: hostA,
			Map: pcp.Map{Nonce: nonce, Protocol: 6, InternalPort: port, ExternalPort: port}}
	}
	r := pcpDo(t, s, src, mapReq(8080, 600))
	if r.Result != pcp.Success || r.Map.ExternalPort != 8080 || r.Map.ExternalAddr != public || r.Lifetime != 600 || r.Map.Nonce != nonce {
		t.Fatalf("MAP: %+v", r)
	}
	for _, c := range []struct {
		name string
		src  netip.AddrPort
		m    *pcp.Message
		want pcp.Result
	}{
		{"quota", src, mapReq(8081, 600), pcp.UserExQuota},
		{"behind a NAT", netip.AddrPortFrom(hostB, 1), mapReq(8081, 600), pcp.AddressMismatch},
		{"third party", src, func() *pcp.Message { m := mapReq(8081, 600); m.ThirdParty = hostB; return m }(), pcp.NotAuthorized},
		{"all protocols", src, func() *pcp.Message { m := mapReq(8081, 600); m.Map.Protocol = 0; return m }(), pcp.UnsuppProtocol},
		{"another nonce", src, func() *pcp.Message { m := mapReq(8080, 600); m.Map.Nonce[0]++; return m }(), pcp.NotAuthorized},
		{"too many filters", src, func() *pcp.Message {
			m := mapReq(8080, 600)
			for range MaxFilters + 1 {
				m.Filters = append(m.Filters, pcp.Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24")})
			}
			return m
		}(), pcp.ExcessiveRemotePeers},
	} {
		if r := pcpDo(t, s, c.src, c.m); r.Result != c.want {
			t.Errorf("%s: %v, want %v", c.name, r.Result, c.want)
		}
	}
	if r := pcpDo(t, s, src, &pcp.Message{Opcode: pcp.OpAnnounce, Client: hostA}); r.Result != pcp.Success || r.Opcode != pcp.OpAnnounce {
		t.Errorf("ANNOUNCE: %+v", r)
	}
	if r := pcpDo(t, s, src, mapReq(8080, 0)); r.Result != pcp.Success || be.Len() != 0 {
		t.Errorf("delete: %+v, %d left", r, be.Len())
	}
	// PREFER_FAILURE on a busy port: CANNOT_PROVIDE_EXTERNAL; without
	// it, the nearest port.
	be.Busy[9000] = true
	m := mapReq(9000, 60)
	m.PreferFailure = true
	if r := pcpDo(t, s, src, m); r.Result != pcp.CannotProvideExternal {
		t.Errorf("PREFER_FAILURE: %v", r.Result)
	}
	if r := pcpDo(t, s, src, mapReq(9000, 60)); r.Result != pcp.Success || r.Map.ExternalPort != 9001 {
		t.Errorf("nearest: %v port %d", r.Result, r.Map.ExternalPort)
	}
	// IPv6: a pinhole for the host's own address.
	r = pcpDo(t, s, netip.AddrPortFrom(host6, 1), &pcp.Message{Opcode: pcp.OpMap, Lifetime: 60, Client: host6,
		Map: pcp.Map{Nonce: nonce, Protocol: 17, InternalPort: 5000}})
	if r.Result != pcp.Success || r.Map.ExternalAddr != host6 || r.Map.ExternalPort != 5000 {
		t.Errorf("IPv6 MAP: %+v", r)
	}
	if n := s.t.Counts()["refused-address-mismatch"]; n != 1 {
		t.Errorf("refused-address-mismatch %d", n)
	}
}

// A MAP of all protocols and ports with lifetime 0 deletes the client's
// mappings of its nonce, and only those.
func TestPCPDeleteAll(t *testing.T) {
	s, be := newServer(Policy{}, Config{PCP: true})
	src := netip.AddrPortFrom(hostA, 40000)
	mine, theirs := pcp.NewNonce(), pcp.NewNonce()
	for i, n := range [][12]byte{mine, mine, theirs} {
		r := pcpDo(t, s, src, &pcp.Message{Opcode: pcp.OpMap, Lifetime: 60, Client: hostA,
			Map: pcp.Map{Nonce: n, Protocol: []uint8{6, 17, 6}[i], InternalPort: 7000 + uint16(i)}})
		if r.Result != pcp.Success {
			t.Fatal(r.Result)
		}
	}
	r := pcpDo(t, s, src, &pcp.Message{Opcode: pcp.OpMap, Client: hostA, Map: pcp.Map{Nonce: mine}})
	if r.Result != pcp.Success || be.Len() != 1 {
		t.Errorf("delete all: %v, %d left, want 1 (the other nonce's)", r.Result, be.Len())
	}
}

// NAT-PMP through the server, and PCP falling back to it.
func TestNATPMP(t *testing.T) {
	s, be := newServer(Policy{}, Config{NATPMP: true})
	src := netip.AddrPortFrom(hostA, 40000)
	ask := func(r *natpmp.Request) *natpmp.Response {
		out := s.HandleUDP(r.Append(nil), src, t0)
		resp, err := natpmp.ParseResponse(out)
		if err != nil {
			t.Fatalf("%x: %v", out, err)
		}
		return resp
	}
	if r := ask(&natpmp.Request{Opcode: natpmp.OpExternalAddress}); r.Result != 0 || r.External != public {
		t.Errorf("address: %+v", r)
	}
	if r := ask(&natpmp.Request{Opcode: natpmp.OpMapUDP, InternalPort: 6000, ExternalPort: 6001, Lifetime: 7200}); r.Result != 0 || r.ExternalPort != 6001 || r.Lifetime != 7200 {
		t.Errorf("map: %+v", r)
	}
	if r := ask(&natpmp.Request{Opcode: natpmp.OpMapUDP, InternalPort: 6000}); r.Result != 0 || be.Len() != 0 {
		t.Errorf("unmap: %+v, %d left", r, be.Len())
	}
	// PCP is off: a PCP request gets NAT-PMP's UNSUPPORTED_VERSION.
	out := s.HandleUDP((&pcp.Message{Opcode: pcp.OpAnnounce, Client: hostA}).Append(nil), src, t0)
	if r, err := natpmp.ParseResponse(out); err != nil || r.Result != natpmp.UnsupportedVersion {
		t.Errorf("PCP to a NAT-PMP server: %+v %v", r, err)
	}
	be.Public = netip.Addr{}
	if r := ask(&natpmp.Request{Opcode: natpmp.OpMapTCP, InternalPort: 6000, Lifetime: 60}); r.Result != natpmp.NetworkFailure {
		t.Errorf("no public IPv4: %+v", r)
	}
}

// UPnP actions: AddPortMapping exact, AddAnyPortMapping nearest,
// entries by port and index, delete, pinholes.
func TestUPnPActions(t *testing.T) {
	s, _ := newServer(Policy{}, Config{UPnP: true})
	do := func(client netip.Addr, svc, name string, args map[string]string) ([]upnp.Arg, int) {
		out, code, _ := s.HandleAction(&upnp.Action{Service: svc, Name: name, Args: args}, client, t0)
		return out, code
	}
	add := map[string]string{"NewRemoteHost": "", "NewExternalPort": "8080", "NewProtocol": "TCP", "NewInternalPort": "80",
		"NewInternalClient": hostA.String(), "NewEnabled": "1", "NewPortMappingDescription": "web", "NewLeaseDuration": "0"}
	if _, code := do(hostA, upnp.WANIPConn1, "AddPortMapping", add); code != 0 {
		t.Fatalf("AddPortMapping: %d", code)
	}
	if _, code := do(hostB, upnp.WANIPConn1, "AddPortMapping", add); code != 606 {
		t.Errorf("for another host: %d, want 606", code)
	}
	addB := map[string]string{}
	for k, v := range add {
		addB[k] = v
	}
	addB["NewInternalClient"] = hostB.String()
	if _, code := do(hostB, upnp.WANIPConn1, "AddPortMapping", addB); code != 718 {
		t.Errorf("a taken port: %d, want 718", code)
	}
	if out, code := do(hostB, upnp.WANIPConn2, "AddAnyPortMapping", addB); code != 0 || out[0][1] != "8079" && out[0][1] != "8081" {
		t.Errorf("AddAnyPortMapping: %v %d", out, code)
	}
	if _, code := do(hostB, upnp.WANIPConn1, "AddAnyPortMapping", addB); code != 401 {
		t.Errorf("AddAnyPortMapping on v1: %d", code)
	}
	out, code := do(hostA, upnp.WANIPConn1, "GetSpecificPortMappingEntry", map[string]string{"NewExternalPort": "8080", "NewProtocol": "TCP"})
	if code != 0 || out[1][1] != hostA.String() || out[4][1] != "86400" {
		t.Errorf("GetSpecificPortMappingEntry: %v %d", out, code)
	}
	if out, code := do(hostA, upnp.WANIPConn1, "GetGenericPortMappingEntry", map[string]string{"NewPortMappingIndex": "1"}); code != 0 || out[4][1] != hostB.String() {
		t.Errorf("GetGenericPortMappingEntry 1: %v %d", out, code)
	}
	if _, code := do(hostA, upnp.WANIPConn1, "GetGenericPortMappingEntry", map[string]string{"NewPortMappingIndex": "2"}); code != 713 {
		t.Errorf("index past the end: %d", code)
	}
	if _, code := do(hostA, upnp.WANIPConn1, "DeletePortMapping", map[string]string{"NewExternalPort": "8080", "NewProtocol": "TCP"}); code != 0 {
		t.Errorf("DeletePortMapping: %d", code)
	}
	if _, code := do(hostA, upnp.WANIPConn1, "DeletePortMapping", map[string]string{"NewExternalPort": "8080", "NewProtocol": "TCP"}); code != 714 {
		t.Errorf("DeletePortMapping again: %d", code)
	}
	if out, code := do(hostA, upnp.WANIPConn1, "GetExternalIPAddress", nil); code != 0 || out[0][1] != public.String() {
		t.Errorf("GetExternalIPAddress: %v %d", out, code)
	}
	pin := map[string]string{"RemoteHost": "", "RemotePort": "0", "InternalClient": host6.String(), "InternalPort": "443", "Protocol": "6", "LeaseTime": "3600"}
	out, code = do(host6, upnp.WANIPv6FW1, "AddPinhole", pin)
	if code != 0 {
		t.Fatalf("AddPinhole: %d", code)
	}
	id := out[0][1]
	if _, code := do(hostA, upnp.WANIPv6FW1, "DeletePinhole", map[string]string{"UniqueID": id}); code != 606 {
		t.Errorf("DeletePinhole by another host: %d", code)
	}
	if _, code := do(host6, upnp.WANIPv6FW1, "UpdatePinhole", map[string]string{"UniqueID": id, "NewLeaseTime": "600"}); code != 0 {
		t.Errorf("UpdatePinhole: %d", code)
	}
	if _, code := do(host6, upnp.WANIPv6FW1, "DeletePinhole", map[string]string{"UniqueID": id}); code != 0 {
		t.Errorf("DeletePinhole: %d", code)
	}
	if _, code := do(host6, upnp.WANIPv6FW1, "DeletePinhole", map[string]string{"UniqueID": id}); code != 704 {
		t.Errorf("DeletePinhole again: %d", code)
	}
	if out, code := do(host6, upnp.WANIPv6FW1, "GetOutboundPinholeTimeout", map[string]string{"Protocol": "17"}); code != 0 || out[0][1] != "300" {
		t.Errorf("GetOutboundPinholeTimeout: %v %d", out, code)
	}
}

// BenchmarkHandle is the server's cost per request, from the datagram in
// to the answer out (no socket): an ANNOUNCE (parse and answer, no
// table: the baseline), a PCP MAP and a NAT-PMP mapping renewed, and PCP
// grants and releases by turns. req/s is what one core serves.
func BenchmarkHandle(b *testing.B) {
	s, _ := newServer(Policy{PerHost: 1 << 20, PerSite: 1 << 20}, Config{PCP: true, NATPMP: true})
	src := netip.AddrPortFrom(hostA, 40000)
	for _, c := range []struct {
		name string
		req  []byte
	}{
		{"pcp-announce", (&pcp.Message{Opcode: pcp.OpAnnounce, Client: hostA}).Append(nil)},
		{"pcp-map", (&pcp.Message{Opcode: pcp.OpMap, Lifetime: 600, Client: hostA, Map: pcp.Map{Protocol: 6, InternalPort: 8080}}).Append(nil)},
		{"natpmp-map", (&natpmp.Request{Opcode: natpmp.OpMapUDP, InternalPort: 8080, Lifetime: 600}).Append(nil)},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if s.HandleUDP(c.req, src, t0) == nil {
					b.Fatal("no answer")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
	// A grant and its release (lifetime 0) by turns: the table's and
	// backend's full work, and a log line each (to a discarding handler).
	b.Run("pcp-map-unmap", func(b *testing.B) {
		m := &pcp.Message{Opcode: pcp.OpMap, Lifetime: 600, Client: hostA, Map: pcp.Map{Protocol: 17, InternalPort: 9000}}
		grant := m.Append(nil)
		m.Lifetime = 0
		release := m.Append(nil)
		i := 0
		for b.Loop() {
			req := grant
			if i++; i%2 == 0 {
				req = release
			}
			if r, err := pcp.ParseResponse(s.HandleUDP(req, src, t0)); err != nil || r.Result != pcp.Success {
				b.Fatal(r, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}

// A source is held to its share of requests; others keep theirs.
func TestRateLimit(t *testing.T) {
	s, _ := newServer(Policy{}, Config{PCP: true})
	n := 0
	for range 2 * sourceBurst {
		if s.admit(hostA, t0) {
			n++
		}
	}
	if n != sourceBurst {
		t.Errorf("admitted %d at once, want %d", n, sourceBurst)
	}
	if !s.admit(hostB, t0) {
		t.Error("another host refused")
	}
	if !s.admit(hostA, t0.Add(time.Second/sourceRate)) {
		t.Error("no token back after 1/rate")
	}
	if got := s.t.Counts()["refused-rate-limited"]; got != sourceBurst {
		t.Errorf("refused-rate-limited %d, want %d", got, sourceBurst)
	}
}
