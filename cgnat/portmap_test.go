package cgnat

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/portmap"
	"github.com/unmap-dev/unmap/portmap/natpmp"
	"github.com/unmap-dev/unmap/portmap/pcp"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// modelDP is the datapath as the model holds it (session/cgnat's State):
// the agent's grants, the mappings packets make (cgnat.Sub), and the
// explicit mappings, with the model's rules for each.
type modelDP struct {
	*fakeDP
	st *cgnat.State
}

func (f *modelDP) GrantBlock(sub netip.Addr, id uint32) error {
	return errorsJoin(f.fakeDP.GrantBlock(sub, id), f.st.Grant(f.c, sub, id))
}
func (f *modelDP) GrantDeterministic(m cgnat.Deterministic) error {
	for i := range m.Config.Subscribers() {
		sub := addAddr(m.Config.Inside.Addr(), i)
		ids, _ := m.Blocks(sub)
		for _, id := range ids {
			if err := f.GrantBlock(sub, id); err != nil {
				return err
			}
		}
	}
	return nil
}
func (f *modelDP) CGNATBlockUsed(id uint32) ([cgnat.Planes]uint32, error) {
	if b := f.st.Blocks[id]; b != nil {
		return b.Used, nil
	}
	return [cgnat.Planes]uint32{}, nil
}
func (f *modelDP) CGNATMappings() (map[cgnat.Key]cgnat.Out, error) { return f.st.Out, nil }
func (f *modelDP) CGNATSlots() (map[cgnat.Slot]cgnat.In, error)    { return f.st.In, nil }
func (f *modelDP) SetCGNATEpoch(e uint16) error                    { f.st.Epoch = e; return nil }
func (f *modelDP) ReleaseMapping(k cgnat.Key) error                { return f.st.Release(f.c, k) }
func (f *modelDP) CGNATMapping(k cgnat.Key) (cgnat.Out, bool, error) {
	o, ok := f.st.Out[k]
	return o, ok, nil
}
func (f *modelDP) MapExplicit(k cgnat.Key, pub netip.Addr, port uint16) error {
	return f.st.MapExplicit(f.c, k, pub, port)
}
func (f *modelDP) Unexplicit(k cgnat.Key) error { return f.st.Unexplicit(f.c, k) }

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// TestPortMapper: the relay's backend under the portmap server, on the
// model's datapath. A subscriber holding no block asks by PCP: a block
// is granted (logged) and the mapping is an explicit one on its first
// port (the asked port is below the blocks); the sweep leaves it however
// long it is idle while an ordinary mapping expires; an endpoint its
// outbound flow mapped keeps its port and becomes explicit, and deleting
// it makes it ordinary again (not released); deleting the one the
// request made releases it and its port; NAT-PMP maps and tells the
// subscriber's address; PREFER_FAILURE outside its block, another
// host's address, a FILTER, the per-subscriber quota and a source
// outside the subscribers are refused and counted; a lifetime's end
// releases.
func TestPortMapper(t *testing.T) {
	s := testSettings(t, false)
	s.PortMap.PCP, s.PortMap.NATPMP = true, true
	s.PortMap.Policy.PerHost = 3
	s.PortMap.Policy.Allowed = []netip.Prefix{s.Datapath.Inside}
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	dp := &modelDP{fakeDP: newFake(&s.Datapath), st: cgnat.NewState()}
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	a, err := NewAgent(s, dp, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	be := newMapBackend(a, dp, nil, quiet)
	tab := portmap.NewTable(s.PortMap.Policy, be, quiet)
	srv := portmap.NewServer(portmap.Config{PCP: true, NATPMP: true, Log: quiet}, tab)
	nonce := pcp.NewNonce()
	src := netip.AddrPortFrom(subA, 5350)
	pcpMap := func(proto uint8, in, ext uint16, life uint32, edit func(*pcp.Message)) *pcp.Message {
		t.Helper()
		m := &pcp.Message{Opcode: pcp.OpMap, Lifetime: life, Client: subA,
			Map: pcp.Map{Nonce: nonce, Protocol: proto, InternalPort: in, ExternalPort: ext}}
		if edit != nil {
			edit(m)
		}
		out := srv.HandleUDP(m.Append(nil), src, clk.now())
		r, err := pcp.ParseResponse(out)
		if err != nil {
			t.Fatalf("PCP answer %x: %v", out, err)
		}
		return r
	}
	pool := s.Datapath.PoolFirst

	r := pcpMap(6, 8080, 0, 3600, nil)
	held := a.Held(subA)
	blockAddr, first := s.Datapath.BlockAt(held[0])
	if r.Result != pcp.Success || len(held) != 1 || r.Map.ExternalAddr != blockAddr || r.Map.ExternalPort != first || blockAddr != pool {
		t.Fatalf("MAP with no block: %v %v:%d, blocks %v (first port %d)", r.Result, r.Map.ExternalAddr, r.Map.ExternalPort, held, first)
	}
	if n := strings.Count(readLog(t, s.Log), `"event":"grant"`); n != 1 {
		t.Fatalf("block log: %d grants, want 1", n)
	}
	tcpKey := cgnat.Key{Addr: subA, Port: 8080, Proto: 6}
	off, _ := s.Datapath.PoolPort(blockAddr, first)
	if o := dp.st.Out[tcpKey]; o.Port != first || !dp.st.In[cgnat.Slot{Plane: 0, Off: off}].Explicit {
		t.Fatalf("datapath: %+v, slot %+v", o, dp.st.In[cgnat.Slot{Plane: 0, Off: off}])
	}

	// An outbound UDP flow maps 5000 implicitly; a MAP of it keeps its port.
	pkt := xlattest.Build(xlattest.Spec{Proto: 17, Src: subA, SPort: 5000, Dst: netip.MustParseAddr("198.51.100.1"), DPort: 53})
	if res := cgnat.Sub(&s.Datapath, dp.st, pkt); !res.Hit {
		t.Fatalf("outbound: %v", res.Reason)
	}
	udpKey := cgnat.Key{Addr: subA, Port: 5000, Proto: 17}
	implicitPort := dp.st.Out[udpKey].Port
	if r := pcpMap(17, 5000, first+100, 3600, nil); r.Result != pcp.Success || r.Map.ExternalPort != implicitPort {
		t.Fatalf("MAP of a mapped endpoint: %v port %d, want its %d", r.Result, r.Map.ExternalPort, implicitPort)
	}
	if r := pcpMap(17, 5000, first+100, 3600, func(m *pcp.Message) { m.PreferFailure = true }); r.Result != pcp.CannotProvideExternal {
		t.Fatalf("PREFER_FAILURE for another port of a mapped endpoint: %v", r.Result)
	}
	// Idle for three hours: the explicit mappings stay, an ordinary one goes.
	other := xlattest.Build(xlattest.Spec{Proto: 17, Src: subA, SPort: 5001, Dst: netip.MustParseAddr("198.51.100.1"), DPort: 53})
	cgnat.Sub(&s.Datapath, dp.st, other)
	clk.step(3 * time.Hour)
	if err := a.Sweep(); err != nil {
		t.Fatal(err)
	}
	_, tcpLive := dp.st.Out[tcpKey]
	_, udpLive := dp.st.Out[udpKey]
	_, otherLive := dp.st.Out[cgnat.Key{Addr: subA, Port: 5001, Proto: 17}]
	if !tcpLive || !udpLive || otherLive {
		t.Fatalf("after 3 h idle: explicit TCP %v, explicit UDP %v, ordinary %v", tcpLive, udpLive, otherLive)
	}
	// Deleting: the implicit one goes back to ordinary, the other ends.
	if r := pcpMap(17, 5000, 0, 0, nil); r.Result != pcp.Success {
		t.Fatal(r.Result)
	}
	uoff, _ := s.Datapath.PoolPort(blockAddr, implicitPort)
	if o, ok := dp.st.Out[udpKey]; !ok || dp.st.In[cgnat.Slot{Plane: 1, Off: uoff}].Explicit || o.Epoch != dp.st.Epoch {
		t.Fatalf("deleted over an implicit mapping: %+v %v, slot %+v", o, ok, dp.st.In[cgnat.Slot{Plane: 1, Off: uoff}])
	}
	if r := pcpMap(6, 8080, 0, 0, nil); r.Result != pcp.Success {
		t.Fatal(r.Result)
	}
	if _, ok := dp.st.Out[tcpKey]; ok || dp.st.Blocks[held[0]].Used[0] != 0 {
		t.Fatalf("deleted: mapping still there, or its port (%d used)", dp.st.Blocks[held[0]].Used[0])
	}

	// NAT-PMP: the subscriber's address; a UDP map at the asked port.
	out := srv.HandleUDP((&natpmp.Request{Opcode: natpmp.OpExternalAddress}).Append(nil), src, clk.now())
	if nr, err := natpmp.ParseResponse(out); err != nil || nr.External != blockAddr {
		t.Fatalf("NAT-PMP address: %+v %v", nr, err)
	}
	out = srv.HandleUDP((&natpmp.Request{Opcode: natpmp.OpMapUDP, InternalPort: 6000, ExternalPort: first + 7, Lifetime: 120}).Append(nil), src, clk.now())
	if nr, err := natpmp.ParseResponse(out); err != nil || nr.Result != natpmp.Success || nr.ExternalPort != first+7 {
		t.Fatalf("NAT-PMP map: %+v %v", nr, err)
	}

	// Refusals, each counted.
	for _, c := range []struct {
		name string
		edit func(*pcp.Message)
		want pcp.Result
		why  string
	}{
		{"outside its block", func(m *pcp.Message) { m.PreferFailure = true; m.Map.ExternalPort = first + 600 }, pcp.CannotProvideExternal, "port-unavailable"},
		{"another host", func(m *pcp.Message) { m.ThirdParty = subB }, pcp.NotAuthorized, "not-self"},
		{"a filter", func(m *pcp.Message) {
			m.Filters = []pcp.Filter{{Prefix: netip.MustParsePrefix("198.51.100.0/24")}}
		}, pcp.UnsuppOption, "unsupported-option"},
	} {
		before := tab.Counts()["refused-"+c.why]
		if r := pcpMap(6, 9000, 0, 600, c.edit); r.Result != c.want || tab.Counts()["refused-"+c.why] != before+1 {
			t.Errorf("%s: %v (want %v), refused-%s %d", c.name, r.Result, c.want, c.why, tab.Counts()["refused-"+c.why]-before)
		}
	}
	for i := range 2 { // with NAT-PMP's, the subscriber's three
		pcpMap(6, uint16(9100+i), 0, 600, nil)
	}
	if r := pcpMap(6, 9200, 0, 600, nil); r.Result != pcp.UserExQuota || tab.Counts()["refused-host-quota"] != 1 {
		t.Errorf("past per_subscriber: %v", r.Result)
	}
	stranger := netip.MustParseAddr("192.0.2.77")
	m := &pcp.Message{Opcode: pcp.OpMap, Lifetime: 600, Client: stranger, Map: pcp.Map{Nonce: nonce, Protocol: 6, InternalPort: 80}}
	if r, err := pcp.ParseResponse(srv.HandleUDP(m.Append(nil), netip.AddrPortFrom(stranger, 1), clk.now())); err != nil || r.Result != pcp.NotAuthorized {
		t.Errorf("a source outside the subscribers: %+v %v", r, err)
	}

	// A lifetime's end releases.
	n := len(dp.st.Out)
	tab.Expire(clk.now().Add(2 * time.Hour))
	if len(dp.st.Out) != n-3 || len(tab.Mappings()) != 0 {
		t.Errorf("after every lifetime: %d mappings in the datapath (from %d), %d in the table", len(dp.st.Out), n, len(tab.Mappings()))
	}
}

// TestPortMapperDeterministic: in deterministic mode a subscriber maps
// ports of its computed blocks (the formula's, so `unmap relay lookup`
// names it), the asked one when inside them, the nearest otherwise.
func TestPortMapperDeterministic(t *testing.T) {
	s := testSettings(t, true)
	s.PortMap.Policy.Allowed = []netip.Prefix{s.Datapath.Inside}
	dp := &modelDP{fakeDP: newFake(&s.Datapath), st: cgnat.NewState()}
	a, err := NewAgent(s, dp, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tab := portmap.NewTable(s.PortMap.Policy, newMapBackend(a, dp, nil, quiet), quiet)
	det := cgnat.Deterministic{Config: &s.Datapath, Quota: s.Quota}
	ids, _ := det.Blocks(subA)
	addr, first := s.Datapath.BlockAt(ids[1])
	now := time.Now()
	for _, c := range []struct{ ask, want uint16 }{{first + 3, first + 3}, {1000, 0}} {
		m, why := tab.Map(portmap.Request{Via: portmap.ViaNATPMP, Client: subA, Proto: portmap.UDP,
			Internal: netip.AddrPortFrom(subA, c.ask), Port: c.ask, Lifetime: time.Hour}, now)
		who, ok := det.Subscriber(m.External.Addr(), m.External.Port())
		if why != portmap.OK || m.External.Addr() != addr || c.want != 0 && m.External.Port() != c.want || !ok || who != subA {
			t.Errorf("asking %d: %v %v (the formula says %v %v)", c.ask, why, m.External, who, ok)
		}
	}
}

// TestPortMapperRefusesNAT64: port mapping is NAT44's only. A PCP MAP
// from an IPv6-only subscriber (a host of a /64 of inside6, behind the
// relay's NAT64) is refused NOT_AUTHORIZED and counted ipv4-only, and
// neither a block nor a mapping is made for its /64; the datapath's
// explicit mappings refuse an IPv6 key by name (ErrExplicit64), as the
// model's do; an IPv4 subscriber of the same relay still maps.
func TestPortMapperRefusesNAT64(t *testing.T) {
	c := Config{Interface: "sub0", Inside: "100.64.0.0/24", Pool: "192.0.2.8/30", Ports: "40960-45055",
		BlockSize: 512, BlocksPerSubscriber: 2, Inside6: "2001:db8:600::/56", Log: t.TempDir() + "/blocks.log",
		PortMapping: PortMapping{PCP: true}}
	s, err := c.Parse("cgnat", Relay{Interface: "ext0"})
	if err != nil {
		t.Fatal(err)
	}
	dp := &modelDP{fakeDP: newFake(&s.Datapath), st: cgnat.NewState()}
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	a, err := NewAgent(s, dp, blog, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tab := portmap.NewTable(s.PortMap.Policy, newMapBackend(a, dp, nil, quiet), quiet)
	srv := portmap.NewServer(portmap.Config{PCP: true, Log: quiet}, tab)
	pcpMap := func(client netip.Addr) *pcp.Message {
		t.Helper()
		m := &pcp.Message{Opcode: pcp.OpMap, Lifetime: 600, Client: client,
			Map: pcp.Map{Nonce: pcp.NewNonce(), Protocol: 6, InternalPort: 8080}}
		r, err := pcp.ParseResponse(srv.HandleUDP(m.Append(nil), netip.AddrPortFrom(client, 5350), time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	host := netip.MustParseAddr("2001:db8:600:7::abcd")
	if r := pcpMap(host); r.Result != pcp.NotAuthorized || tab.Counts()["refused-ipv4-only"] != 1 {
		t.Fatalf("MAP from NAT64 host %v: %v, refused-ipv4-only %d", host, r.Result, tab.Counts()["refused-ipv4-only"])
	}
	if sub := s.Datapath.SubOf(host); len(a.Held(sub)) != 0 || len(dp.st.Out) != 0 {
		t.Fatalf("refused, yet /64 %v holds %v, mappings %v", sub, a.Held(sub), dp.st.Out)
	}
	k := cgnat.Key{Addr: host, Port: 8080, Proto: 6}
	if err := dp.MapExplicit(k, s.Datapath.PoolFirst, 40960); !errors.Is(err, cgnat.ErrExplicit64) {
		t.Errorf("model MapExplicit of %+v: %v, want ErrExplicit64", k, err)
	}
	if err := dp.Unexplicit(k); !errors.Is(err, cgnat.ErrExplicit64) {
		t.Errorf("model Unexplicit of %+v: %v, want ErrExplicit64", k, err)
	}
	if r := pcpMap(subA); r.Result != pcp.Success {
		t.Fatalf("MAP from IPv4 subscriber %v beside NAT64: %v", subA, r.Result)
	}
}
