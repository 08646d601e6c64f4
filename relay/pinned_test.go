package relay

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/test/bpffs"
	"github.com/unmap-dev/unmap/xdp"
)

var (
	pinRelay  = netip.MustParseAddr("198.51.100.6")
	pinPublic = netip.MustParseAddr("198.51.100.2") // the CGNAT of site home
	pinAway   = netip.MustParseAddr("198.51.100.3") // the CGNAT of site away
)

func pinSettings() *Settings {
	return &Settings{
		Addresses:    []netip.Addr{pinRelay},
		CarrierPorts: config.PortRange{First: 20000, Last: 20015},
		Timers:       config.Timers{UDP: 2 * time.Minute, TCPEstablished: 124 * time.Minute, TCPTransitory: 4 * time.Minute, ICMP: time.Minute},
		Sites: []Site{
			{ID: "home", Prefix: netip.MustParsePrefix("2001:db8:5::/56"), MaxFlows: 16},
			{ID: "away", Prefix: netip.MustParsePrefix("2001:db8:7::/56"), MaxFlows: 16},
		},
	}
}

// loadPinned loads the relay's datapath on the maps pinned in dir, as
// an agent start does (no interface: the test runs packets through it).
func loadPinned(t *testing.T, s *Settings, dir string) *datapath {
	t.Helper()
	cfg := xlat.Config{CarrierAddr: s.Addresses[0], PortLo: s.CarrierPorts.First, PortHi: s.CarrierPorts.Last}
	d, err := xdp.Load(cfg, xdp.Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.SetFIB(false); err != nil { // translated packets pass: no routes here
		t.Fatal(err)
	}
	return &datapath{Datapath: &slowpath.Datapath{XDP: d, Cfg: cfg}}
}

// pinFlow is a flow of a site and its bound carrier on relay port r.
type pinFlow struct {
	f session.Flow
	c session.Carrier
}

func newPinFlow(p session.Proto, site string, public netip.Addr, r uint16) pinFlow {
	return pinFlow{
		f: session.Flow{Proto: p, Site: netip.AddrPortFrom(netip.MustParseAddr(site), 1000+r), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")},
		c: session.Carrier{Proto: p, Relay: netip.AddrPortFrom(pinRelay, r), Public: netip.AddrPortFrom(public, 40000+r)},
	}
}

func (p pinFlow) pair(t *testing.T) (xdp.Mapping, xdp.Mapping) {
	t.Helper()
	out, back, err := xdp.RelayPair(p.f, p.c)
	if err != nil {
		t.Fatal(err)
	}
	return out, back
}

func (p pinFlow) replay() *proto.ReplayEntry {
	return &proto.ReplayEntry{Flow: p.f, CarrierProto: p.c.Proto, Relay: p.c.Relay, Public: p.c.Public,
		EdgePort: 61000, Token: 7, LifetimeSec: 120}
}

// edgePeer is a session's identity without a control channel.
type edgePeer struct {
	site string
	id   uint64
	from netip.Addr
}

func (e edgePeer) Site() string         { return e.site }
func (e edgePeer) ID() uint64           { return e.id }
func (e edgePeer) RemoteAddr() net.Addr { return &net.UDPAddr{IP: e.from.AsSlice(), Port: 4433} }

// TestPinnedFlowsAcrossRestart: an agent finds the flows the last one
// left in the pinned datapath and holds their ports; a replay that
// would install exactly their entries adopts them (their counters go
// on), one that differs replaces them, the site's replay done removes
// those it left out, and the grace removes those of a site that never
// came back. What makes no flow is removed at start.
func TestPinnedFlowsAcrossRestart(t *testing.T) {
	s := pinSettings()
	dir := filepath.Join(bpffs.ForTest(t), "unmap-relay")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	kept := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20001)     // replayed as it is: adopted
	moved := newPinFlow(session.TCP, "2001:db8:5::2", pinPublic, 20002)    // replayed on another CGNAT port: replaced
	gone := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20003)     // left out of home's replay
	away := newPinFlow(session.UDP, "2001:db8:7::2", pinAway, 20004)       // its site never comes back
	unheard := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20005)  // replayed unbound: the edge missed its CarrierBound
	half := newPinFlow(session.TCP, "2001:db8:5::2", pinPublic, 20006)     // an inbound TCP flow with one direction in: not kept
	reopened := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20007) // opened anew by the edge
	lone := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20008)     // only its return entry: no flow

	// The last agent's datapath: its flows, and a packet on one.
	old := loadPinned(t, s, dir)
	for _, p := range []pinFlow{kept, moved, gone, away, unheard, reopened} {
		if err := old.mapFlow(p.f, p.c); err != nil {
			t.Fatal(err)
		}
	}
	hOut, _ := half.pair(t)
	_, lBack := lone.pair(t)
	if err := errors.Join(old.XDP.Put(hOut.Key, hOut.Entry), old.XDP.Put(lBack.Key, lBack.Entry)); err != nil {
		t.Fatal(err)
	}
	kOut, kBack := kept.pair(t)
	pkt := xlattest.Build(xlattest.Spec{Src: pinPublic, Dst: pinRelay, Proto: 17, SPort: kept.c.Public.Port(), DPort: kept.c.Relay.Port(), Payload: []byte("before")})
	if ret, err := old.XDP.Program(xlat.RoleRelayExt).Run(&ebpf.RunOptions{Data: pkt}); err != nil || xlat.Verdict(ret) != xlat.Pass {
		t.Fatalf("carrier packet: verdict %v, %v", xlat.Verdict(ret), err)
	}
	before, err := old.XDP.FlowCounters(kOut.Key)
	if err != nil || before.Packets != 1 {
		t.Fatalf("counters before the restart: %+v, %v", before, err)
	}
	old.XDP.Close()

	// The next agent.
	dp := loadPinned(t, s, dir)
	c, err := newAgent(s, log)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now, c.dp = clk.now, dp
	ms, err := dp.XDP.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	if n := c.takePinned(ms, s.Addresses); n != 6 {
		t.Fatalf("%d pinned flows, want 6", n)
	}
	want := map[string]uint64{"pinned": 6, "pinned-unusable": 2}
	checkCounts(t, c, "at start", want)
	if has(t, dp, lBack.Key) || has(t, dp, hOut.Key) {
		t.Error("half a pair was kept")
	}

	// Their ports are held: neither the relay nor an edge picking R gets one.
	if _, err := c.ports.Claim("home", ports.Key{Relay: pinRelay, Public: pinPublic, Proto: session.UDP}, gone.c.Relay.Port()); !errors.Is(err, ports.ErrInUse) {
		t.Errorf("claim of a pinned carrier's port: %v, want in use", err)
	}
	var granted []ports.Lease
	for {
		l, err := c.ports.Grant("home", pinPublic, session.UDP)
		if err != nil {
			break
		}
		granted = append(granted, l)
		if slices.Contains([]uint16{20001, 20003, 20005, 20007}, l.Port) {
			t.Errorf("granted pinned port %d", l.Port)
		}
	}
	if len(granted) == 0 {
		t.Fatal("no port granted at all")
	}
	for _, l := range granted {
		if err := c.ports.Release(l); err != nil {
			t.Fatal(err)
		}
	}

	home := edgePeer{"home", 1, pinPublic}
	if code := c.replayed(home, kept.replay()); code != proto.CodeOK {
		t.Fatalf("replay of the kept flow: %v", code)
	}
	want["replayed-claimed"]++
	want["replayed-pinned"]++
	checkCounts(t, c, "kept flow replayed", want)
	if got, err := dp.XDP.FlowCounters(kOut.Key); err != nil || got.Packets != before.Packets {
		t.Errorf("the adopted flow's counters: %+v, %v; want %d packets (its entry rewritten?)", got, err, before.Packets)
	}
	if k := c.flows.get(kept.f); k == nil || k.public != kept.c.Public || k.lease.Port != kept.c.Relay.Port() {
		t.Fatalf("adopted carrier: %+v", k)
	}

	movedTo := moved
	movedTo.c.Public = netip.AddrPortFrom(pinPublic, 50002)
	unbound := unheard.replay()
	unbound.Public = netip.AddrPort{}
	for name, e := range map[string]*proto.ReplayEntry{"moved": movedTo.replay(), "unheard": unbound, "half": half.replay()} {
		if code := c.replayed(home, e); code != proto.CodeOK {
			t.Fatalf("replay of the %s flow: %v", name, code)
		}
	}
	want["replayed-claimed"] += 3
	want["replayed-pinned"]++ // unheard
	want["pinned-replaced"]++ // moved
	checkCounts(t, c, "replays", want)
	if k := c.flows.get(unheard.f); k == nil || k.public != unheard.c.Public {
		t.Errorf("carrier of the flow replayed unbound: %+v, want it bound to %v as pinned", k, unheard.c.Public)
	}
	mOut, mBack := moved.pair(t)
	if has(t, dp, mOut.Key) {
		t.Error("the moved carrier's old entry is still in")
	}
	nOut, nBack := movedTo.pair(t)
	hOut, hBack := half.pair(t)
	for _, k := range []xlat.Key{nOut.Key, nBack.Key, hOut.Key, hBack.Key, mBack.Key} {
		if !has(t, dp, k) {
			t.Errorf("entry %v missing after the replay", k)
		}
	}

	// The edge opens a flow it had pinned (its own table lost it): the
	// old entries go.
	g, _ := c.open(home, &proto.FlowOpen{Flow: reopened.f, CarrierProto: session.UDP, EdgePort: 61001, Token: 9, LifetimeSec: 120})
	if g.Result != proto.CodeOK {
		t.Fatalf("open: %v", g.Result)
	}
	want["opened"]++
	want["pinned-replaced"]++
	checkCounts(t, c, "reopened", want)
	if rOut, _ := reopened.pair(t); has(t, dp, rOut.Key) {
		t.Error("the reopened flow's pinned entries are still in")
	}

	c.replayDone(home)
	want["pinned-not-replayed"]++
	checkCounts(t, c, "home's replay done", want)
	if gOut, gBack := gone.pair(t); has(t, dp, gOut.Key) || has(t, dp, gBack.Key) {
		t.Error("a flow home left out of its replay is still in")
	}
	if n := c.ports.Held("home"); n != 5 {
		t.Errorf("home holds %d ports, want 5 (kept, moved, unheard, half, reopened)", n)
	}

	aOut, _ := away.pair(t)
	clk.add(pinnedGrace - time.Second)
	c.sweep()
	if !has(t, dp, aOut.Key) || c.m.Snapshot()["pinned-stale"] != 0 {
		t.Fatal("away's flow went before the grace ended")
	}
	clk.add(2 * time.Second)
	c.sweep()
	want["pinned-stale"]++
	checkCounts(t, c, "after the grace", want)
	if has(t, dp, aOut.Key) || c.ports.Held("away") != 0 || c.pinned.count() != 0 {
		t.Errorf("away's flow after the grace: entry in %v, %d ports held, %d pinned left", has(t, dp, aOut.Key), c.ports.Held("away"), c.pinned.count())
	}
	// What is left is the replayed flows' entries, nothing else.
	ms, err = dp.XDP.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	uOut, uBack := unheard.pair(t)
	wantKeys := []xlat.Key{kOut.Key, kBack.Key, nOut.Key, nBack.Key, uOut.Key, uBack.Key, hOut.Key, hBack.Key}
	if len(ms) != len(wantKeys) {
		t.Errorf("%d entries left, want %d: %v", len(ms), len(wantKeys), ms)
	}
	for _, k := range wantKeys {
		if !has(t, dp, k) {
			t.Errorf("entry %v missing at the end", k)
		}
	}
}

// takeOver is a new agent's start on the datapath pinned in dir: it
// loads it and takes stock of the flows there, returning how many wait
// for a replay.
func takeOver(t *testing.T, s *Settings, dir string) (*agent, *datapath, int) {
	t.Helper()
	dp := loadPinned(t, s, dir)
	c, err := newAgent(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.dp = dp
	ms, err := dp.XDP.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	return c, dp, c.takePinned(ms, s.Addresses)
}

// TestPinnedUnowned: pinned flows of a site no longer configured, or on
// a port out of the carrier range, are removed at start.
func TestPinnedUnowned(t *testing.T) {
	s := pinSettings()
	dir := filepath.Join(bpffs.ForTest(t), "unmap-relay")
	old := loadPinned(t, s, dir)
	away := newPinFlow(session.UDP, "2001:db8:7::2", pinAway, 20004)
	home := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20001)
	for _, p := range []pinFlow{away, home} {
		if err := old.mapFlow(p.f, p.c); err != nil {
			t.Fatal(err)
		}
	}
	old.XDP.Close()

	s.Sites = s.Sites[:1] // away is no longer a site
	c, dp, n := takeOver(t, s, dir)
	if n != 1 {
		t.Fatalf("%d pinned flows kept, want 1", n)
	}
	checkCounts(t, c, "at start", map[string]uint64{"pinned": 1, "pinned-unowned": 1})
	aOut, aBack := away.pair(t)
	if has(t, dp, aOut.Key) || has(t, dp, aBack.Key) {
		t.Error("the flow of a site no longer configured is still in")
	}
}

// TestPinnedOtherRange: pins made with another carrier port range of
// the same size have the same layout and load; their carrier slots read
// back as keys of the new ports, which no return entry matches, so every
// entry is removed at start rather than taken for a flow.
func TestPinnedOtherRange(t *testing.T) {
	s := pinSettings()
	dir := filepath.Join(bpffs.ForTest(t), "unmap-relay")
	old := loadPinned(t, s, dir)
	p := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20001)
	if err := old.mapFlow(p.f, p.c); err != nil {
		t.Fatal(err)
	}
	old.XDP.Close()

	s.CarrierPorts = config.PortRange{First: 30000, Last: 30015}
	c, dp, n := takeOver(t, s, dir)
	if n != 0 {
		t.Fatalf("%d pinned flows kept, want none", n)
	}
	checkCounts(t, c, "at start", map[string]uint64{"pinned-unusable": 2})
	if ms, err := dp.XDP.Mappings(); err != nil || len(ms) != 0 {
		t.Errorf("entries left: %v, %v", ms, err)
	}
}

// TestReadPinned: the pairing of entries into flows, without a kernel.
func TestReadPinned(t *testing.T) {
	v4 := pinFlow{
		f: session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("203.0.113.10:5000"), Remote: netip.MustParseAddrPort("192.0.2.7:53")},
		c: session.Carrier{Proto: session.UDP, Relay: netip.AddrPortFrom(pinRelay, 20009), Public: netip.AddrPortFrom(pinPublic, 40009)},
	}
	wrap := pinFlow{
		f: session.Flow{Proto: session.Proto(58), Site: netip.MustParseAddrPort("[2001:db8:5::2]:0"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:0")},
		c: session.Carrier{Proto: session.UDP, Relay: netip.AddrPortFrom(pinRelay, 20010), Public: netip.AddrPortFrom(pinPublic, 40010)},
	}
	full := newPinFlow(session.TCP, "2001:db8:5::2", pinPublic, 20001)
	half := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20002)
	var ms []xdp.Mapping
	for _, p := range []pinFlow{v4, wrap, full} {
		out, back := p.pair(t)
		ms = append(ms, back, out)
	}
	hOut, _ := half.pair(t)
	_, strayBack := newPinFlow(session.UDP, "2001:db8:5::3", pinPublic, 20003).pair(t)
	ms = append(ms, hOut, strayBack)
	flows, rest := readPinned(ms, []netip.Addr{pinRelay})
	if len(rest) != 2 || !slices.Contains(rest, strayBack.Key) || !slices.Contains(rest, hOut.Key) {
		t.Errorf("rest %v, want the stray return entry and the half pair", rest)
	}
	got := map[session.Flow]*pinnedFlow{}
	for _, p := range flows {
		got[p.flow] = p
	}
	for _, p := range []pinFlow{v4, wrap, full} {
		if g := got[p.f]; g == nil || g.carrier != p.c {
			t.Errorf("flow %v: %+v", p.f, g)
		}
	}
	if len(flows) != 3 {
		t.Errorf("%d flows, want 3", len(flows))
	}
}

// has reports whether the datapath has an entry for k.
func has(t *testing.T, dp *datapath, k xlat.Key) bool {
	t.Helper()
	_, err := dp.XDP.FlowCounters(k)
	return err == nil
}

// checkCounts checks c's slow-path counts against want, and that no
// count of the pinned flows' is there that want does not name.
func checkCounts(t *testing.T, c *agent, when string, want map[string]uint64) {
	t.Helper()
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	for name, n := range want {
		if c.m.Snapshot()[name] != n {
			t.Errorf("%s: %s = %d, want %d", when, name, c.m.Snapshot()[name], n)
		}
	}
	for name, n := range c.m.Snapshot() {
		if _, ok := want[name]; !ok && n != 0 && (strings.HasPrefix(name, "pinned") || name == "replayed-pinned") {
			t.Errorf("%s: unexpected %s = %d", when, name, n)
		}
	}
}

// TestPinIncompatible: pins of another table layout (here another size:
// the sites' quotas changed) holding a flow stop the relay with the way
// to clear them, naming the map.
func TestPinIncompatible(t *testing.T) {
	s := pinSettings()
	s.PinPath = bpffs.ForTest(t)
	cfg := xlat.Config{CarrierAddr: s.Addresses[0], PortLo: s.CarrierPorts.First, PortHi: s.CarrierPorts.Last}
	d, err := xdp.Load(cfg, xdp.Options{PinPath: s.PinPath, Buckets: 2 * tableBuckets(s.Sites)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutPair(newPinFlow(session.UDP, "2001:db8:5::2", netip.MustParseAddr("192.0.2.1"), 20001).pair(t)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	dp, err := openDatapath(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		dp.close()
		t.Fatal("the relay took pins of another layout")
	}
	if !errors.Is(err, xdp.ErrPinIncompatible) || !strings.Contains(err.Error(), "unmap relay --unpin") ||
		!strings.Contains(err.Error(), "flowtab: size changed") {
		t.Errorf("error %q does not name the map and say how to clear the pins", err)
	}
}
