package edge

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/test/priv"
	"github.com/unmap-dev/unmap/xdp"
)

var restoreWAN = netip.MustParseAddr("100.64.0.2")

// pinnedDatapath loads the datapath pinned in a bpffs of the test's own,
// as an agent start does (no interfaces attached).
func pinnedDatapath(t *testing.T, dir string) *datapath {
	t.Helper()
	cfg := xlat.Config{CarrierAddr: restoreWAN, PortLo: 61000, PortHi: 61099}
	d, err := xdp.Load(cfg, xdp.Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	dp := &datapath{Datapath: &slowpath.Datapath{XDP: d, Cfg: cfg}}
	if dp.notes, err = openNotes(dir, maxFlows); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.close() })
	return dp
}

func restoreAgent(t *testing.T, dp *datapath) *agent {
	t.Helper()
	s := &Settings{Site: "home", CarrierPorts: confRange(61000, 61099)}
	a, err := newAgent(s, restoreWAN, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.dp = dp
	return a
}

// An agent that starts on the datapath the last one pinned gets its flows
// back, IPv6 and the public IPv4's alike, with what it replays to the
// relay (token, public side, announced endpoint), and removes entries that
// make no flow.
func TestRestoreFromPinnedDatapath(t *testing.T) {
	priv.Require(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	pins := filepath.Join(dir, "edge")

	// The first agent's life: two flows opened, one carrier bound.
	dp1 := pinnedDatapath(t, pins)
	a1 := restoreAgent(t, dp1)
	relayAddr := netip.MustParseAddr("198.51.100.6")
	f6 := session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:5353"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:7")}
	c6, err := a1.take(f6, session.UDP, netip.AddrPortFrom(relayAddr, 20001), proto.BindToken(0x1234))
	if err != nil {
		t.Fatal(err)
	}
	if err := dp1.mapFlow(f6, c6); err != nil {
		t.Fatal(err)
	}
	c6.Public = netip.MustParseAddrPort("198.51.100.2:40001")
	a1.note(f6, c6)

	public := netip.MustParseAddr("203.0.113.10")
	if err := a1.nat.grant(public, ports.Range{}, nil); err != nil {
		t.Fatal(err)
	}
	lan4 := session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("192.0.2.2:40000"), Remote: netip.MustParseAddrPort("198.51.100.10:80")}
	f4, err := a1.nat.outbound(lan4)
	if err != nil {
		t.Fatal(err)
	}
	c4, err := a1.take(f4, session.TCP, netip.AddrPortFrom(relayAddr, 20002), proto.BindToken(0x5678))
	if err != nil {
		t.Fatal(err)
	}
	if err := dp1.mapFlow(lan4, c4); err != nil {
		t.Fatal(err)
	}
	a1.note(f4, c4)

	// Leftovers: half a pair, and a pair from another WAN address.
	half, _, _ := xdp.EdgePair(session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::3]:1"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:2")},
		session.Carrier{Proto: session.UDP, Edge: netip.AddrPortFrom(restoreWAN, 61050), Relay: netip.AddrPortFrom(relayAddr, 20003)})
	if err := dp1.XDP.Put(half.Key, half.Entry); err != nil {
		t.Fatal(err)
	}
	oldOut, oldBack, _ := xdp.EdgePair(session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::4]:1"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:2")},
		session.Carrier{Proto: session.UDP, Edge: netip.MustParseAddrPort("100.64.9.9:61051"), Relay: netip.AddrPortFrom(relayAddr, 20004)})
	if err := dp1.XDP.PutPair(oldOut, oldBack); err != nil {
		t.Fatal(err)
	}
	dp1.close()

	// The next agent.
	dp2 := pinnedDatapath(t, pins)
	a2 := restoreAgent(t, dp2)
	n, err := a2.restore(dp2)
	if err != nil || n != 2 {
		t.Fatalf("restored %d flows (%v), want 2", n, err)
	}
	want := map[session.Flow]proto.ReplayEntry{
		f6: {Flow: f6, CarrierProto: session.UDP, EdgePort: c6.Edge.Port(), Relay: c6.Relay, Public: c6.Public, Token: 0x1234},
		f4: {Flow: f4, CarrierProto: session.TCP, EdgePort: c4.Edge.Port(), Relay: c4.Relay, Token: 0x5678},
	}
	snap := a2.Snapshot()
	if len(snap) != 2 {
		t.Fatalf("replay after restore: %v", snap)
	}
	for _, e := range snap {
		w, ok := want[e.Flow]
		e.LifetimeSec = 0
		if !ok || e != w {
			t.Errorf("replay entry %+v, want %+v", e, w)
		}
	}
	if got := a2.nat.lan(f4); got != lan4 {
		t.Errorf("the public IPv4 flow's LAN side is %v, want %v", got, lan4)
	}
	// The ports are taken again: a new flow gets another one.
	if err := a2.ports.Claim(session.UDP, c6.Edge.Port()); err == nil {
		t.Errorf("carrier port %d free after restore", c6.Edge.Port())
	}
	ms, err := dp2.XDP.Mappings()
	if err != nil || len(ms) != 4 {
		t.Errorf("after restore the datapath holds %d entries (%v), want the 4 of the two flows", len(ms), err)
	}
	if c := a2.Counts(); c["restored"] != 2 || c["restore-stale-entry"] != 3 {
		t.Errorf("counters %v, want 2 restored and 3 stale entries removed", c)
	}

	// A grant of the same address keeps the restored binding.
	if err := a2.nat.grant(public, ports.Range{}, nil); err != nil {
		t.Fatal(err)
	}
	if got := a2.nat.lan(f4); got != lan4 {
		t.Errorf("after the grant the LAN side is %v", got)
	}
}

func TestNotesRoundTrip(t *testing.T) {
	for _, v := range []flowNotes{
		{},
		{Token: 1<<63 + 5, Public: netip.MustParseAddrPort("198.51.100.2:40001")},
		{Token: 7, Site: netip.MustParseAddrPort("203.0.113.10:5000"), Forward: true},
	} {
		got, err := parseNotes(v.marshal())
		if err != nil || got != v {
			t.Errorf("%+v came back as %+v, %v", v, got, err)
		}
	}
}

func FuzzParseNotes(f *testing.F) {
	f.Add(make([]byte, notesValueSize))
	f.Add(flowNotes{Token: 9, Public: netip.MustParseAddrPort("198.51.100.2:1")}.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseNotes(b)
		if err != nil {
			return
		}
		if again, err := parseNotes(v.marshal()); err != nil || again != v {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", v, again, err)
		}
	})
}
