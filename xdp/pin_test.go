package xdp

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/bpffs"
	"github.com/unmap-dev/unmap/test/priv"
)

var pinCfg = xlat.Config{CarrierAddr: netip.MustParseAddr("100.64.0.2"), PortLo: 61000, PortHi: 64999}

// pinFlow is an IPv6 TCP flow's two edge mappings.
func pinFlow() (Mapping, Mapping) {
	f := session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:40000"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:80")}
	c := session.Carrier{Proto: session.TCP, Edge: netip.MustParseAddrPort("100.64.0.2:61000"), Relay: netip.MustParseAddrPort("203.0.113.1:20000")}
	out, back, err := EdgePair(f, c)
	if err != nil {
		panic(err)
	}
	return out, back
}

// A flow installed by one load is found, with its counters, by the next
// load on the same pin path: what an agent restart relies on.
func TestPinnedFlowsOutliveTheLoad(t *testing.T) {
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "edge")
	d, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	// The miss path's rate buckets start full with each load (pin.go).
	if _, err := os.Stat(filepath.Join(dir, datapathMapReasons)); err != nil {
		t.Errorf("reasons not pinned: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, datapathMapMissSrcs)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("miss_srcs pinned (%v)", err)
	}
	out, back := pinFlow()
	if err := d.PutPair(out, back); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d2, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatalf("second load on the pinned maps: %v", err)
	}
	defer d2.Close()
	got, err := d2.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []Mapping{out, back} {
		if !slices.Contains(got, want) {
			t.Errorf("after reloading, %v is missing from %v", want, got)
		}
	}
	if len(got) != 2 {
		t.Errorf("%d mappings, want 2: %v", len(got), got)
	}
	// The new programs hash keys with the pinned table's seed: the flow's
	// packet is found in the bucket the first load put it in.
	if err := d2.SetFIB(false); err != nil {
		t.Fatal(err)
	}
	k := out.Key
	in := xlattest.Build(xlattest.Spec{Proto: k.Proto, Src: k.Src, SPort: k.SPort, Dst: k.Dst, DPort: k.DPort, TTL: 64, Payload: []byte("again")})
	if _, err := d2.Program(xlat.RoleEdgeLAN).Run(&ebpf.RunOptions{Data: in}); err != nil {
		t.Fatal(err)
	}
	if c, err := d2.FlowCounters(k); err != nil || c.Packets != 1 {
		t.Errorf("after reloading, the flow's packet: counters %+v, %v; want 1 packet", c, err)
	}
	if err := Unpin(dir); err != nil {
		t.Fatal(err)
	}
	d3, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d3.Close()
	if got, _ := d3.Mappings(); len(got) != 0 {
		t.Errorf("after Unpin the flow table still holds %v", got)
	}
}

// Pinned maps of another shape that hold flows are refused with an error
// that names them and says how to clear them, whether the kernel sees the
// difference (sizes) or only the layout record does.
func TestPinnedMapsIncompatible(t *testing.T) {
	dir := filepath.Join(bpffs.ForTest(t), "edge")
	d, err := Load(pinCfg, Options{PinPath: dir, MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutPair(pinFlow()); err != nil {
		t.Fatal(err)
	}
	d.Close()
	_, err = Load(pinCfg, Options{PinPath: dir, MaxFlows: 2048})
	if !errors.Is(err, ErrPinIncompatible) || !strings.Contains(err.Error(), "--unpin") ||
		!strings.Contains(err.Error(), "flows: size changed from 1024 to 2048 entries") {
		t.Fatalf("load on smaller pinned maps: %v; want ErrPinIncompatible naming flows and --unpin", err)
	}

	// Same sizes, another layout: only the recorded layout tells.
	lm, err := ebpf.LoadPinnedMap(filepath.Join(dir, layoutPin), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lm.Update(nameKey(datapathMapFlowtab), [32]byte{1}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	lm.Close()
	if _, err := Load(pinCfg, Options{PinPath: dir, MaxFlows: 1024}); !errors.Is(err, ErrPinIncompatible) ||
		!strings.Contains(err.Error(), "flowtab: layout changed") {
		t.Fatalf("load on maps of another layout: %v; want ErrPinIncompatible naming flowtab", err)
	}
	if err := Unpin(dir); err != nil {
		t.Fatal(err)
	}
	d, err = Load(pinCfg, Options{PinPath: dir, MaxFlows: 2048})
	if err != nil {
		t.Fatalf("after Unpin: %v", err)
	}
	d.Close()
}

func TestPinPathNotBPFFS(t *testing.T) {
	priv.Require(t)
	_, err := Load(pinCfg, Options{PinPath: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "mount -t bpf") {
		t.Fatalf("load pinned outside bpffs: %v", err)
	}
}

// A pinned link outlives its agent with the program attached, and the
// next load swaps its own program into the same link.
func TestAttachPinnedKeepsTheLink(t *testing.T) {
	dir := bpffs.ForTest(t)
	inNetns(t, func(h *netlink.Handle) {
		a, _ := veth(t, h, "pa", "pb")
		path := filepath.Join(dir, "link-wan")
		progOn := func() uint32 {
			l, err := h.LinkByIndex(a.Attrs().Index)
			if err != nil || l.Attrs().Xdp == nil {
				t.Fatalf("link: %v", err)
			}
			return l.Attrs().Xdp.ProgId
		}
		d1, err := Load(pinCfg, Options{PinPath: dir})
		if err != nil {
			t.Fatal(err)
		}
		l1, mode, err := d1.AttachPinned(a.Attrs().Index, xlat.RoleEdgeWAN, path)
		if err != nil {
			t.Fatal(err)
		}
		if mode == ModeKept {
			t.Errorf("first attach reported %v", mode)
		}
		l1.Close()
		d1.Close()
		if progOn() == 0 {
			t.Fatal("the program left the interface with its agent: the link was not pinned")
		}

		d2, err := Load(pinCfg, Options{PinPath: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer d2.Close()
		l2, mode, err := d2.AttachPinned(a.Attrs().Index, xlat.RoleEdgeWAN, path)
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		info, err := d2.Program(xlat.RoleEdgeWAN).Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		if mode != ModeKept || progOn() != uint32(id) {
			t.Errorf("second attach: mode %v, program %d on the interface, want kept and %d", mode, progOn(), id)
		}
		if err := l2.Unpin(); err != nil {
			t.Fatal(err)
		}
	})
}

// Entries read back from the map decode to what was written.
func TestMappingRoundTrip(t *testing.T) {
	out, back := pinFlow()
	v4 := Mapping{
		Key:   xlat.Key{Proto: 17, Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("198.51.100.10"), SPort: 5000, DPort: 53},
		Entry: xlat.Entry{Action: xlat.ActNAPT44, Proto: 17, Src: netip.MustParseAddr("100.64.0.2"), Dst: netip.MustParseAddr("203.0.113.1"), SPort: 61001, DPort: 20001},
	}
	for _, m := range []Mapping{out, back, v4} {
		ck, err := cKey(m.Key)
		if err != nil {
			t.Fatal(err)
		}
		ce, err := cEntry(m.Entry)
		if err != nil {
			t.Fatal(err)
		}
		got, err := mappingOf(ck, ce)
		if err != nil || got != m {
			t.Errorf("%v decoded as %v, %v", m, got, err)
		}
	}
}

// FuzzParseMapping: any bytes decode to a valid mapping or an error,
// never a panic.
func FuzzParseMapping(f *testing.F) {
	f.Add(make([]byte, xlat.KeySize), make([]byte, xlat.EntrySize))
	out, _ := pinFlow()
	kb, _ := out.Key.MarshalBinary()
	eb, _ := out.Entry.MarshalBinary()
	f.Add(kb, eb)
	f.Fuzz(func(t *testing.T, kb, eb []byte) {
		m, err := parseMapping(kb, eb)
		if err != nil {
			return
		}
		if err := m.Entry.Validate(); err != nil {
			t.Fatalf("accepted an invalid entry %v", m.Entry)
		}
		if _, err := m.Key.MarshalBinary(); err != nil {
			t.Fatalf("accepted an invalid key %v: %v", m.Key, err)
		}
	})
}

// SetSitePrefixes on pinned maps drops the prefixes an earlier load put
// there and the new configuration lacks: the relay program then passes
// packets to them (not ours) instead of taking them for a site's.
func TestSetSitePrefixesDropsStale(t *testing.T) {
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "relay")
	site6, site4 := netip.MustParsePrefix("2001:db8:5::/56"), netip.MustParsePrefix("203.0.113.10/32")
	d, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetSitePrefixes([]netip.Prefix{site6, site4}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.SetSitePrefixes([]netip.Prefix{site6}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		to   netip.Addr
		want xlat.Reason
	}{
		{netip.MustParseAddr("2001:db8:5::2"), xlat.ReasonMiss},
		{site4.Addr(), xlat.ReasonPassNotOurs},
	} {
		from := netip.MustParseAddr("2001:db8:6::2")
		if c.to.Is4() {
			from = netip.MustParseAddr("198.51.100.9")
		}
		in := xlattest.Build(xlattest.Spec{Proto: 17, Src: from, SPort: 5000, Dst: c.to, DPort: 53, TTL: 64, Payload: []byte("site?")})
		before, err := d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Program(xlat.RoleRelayExt).Run(&ebpf.RunOptions{Data: in}); err != nil {
			t.Fatal(err)
		}
		after, err := d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		if after[c.want] != before[c.want]+1 {
			t.Errorf("a packet to %v: reasons %v -> %v, want one more %v", c.to, before, after, c.want)
		}
	}
}

// SetLocal makes the relay's own addresses what its program refuses as
// sources towards a site (drop-martian-own), and on pinned maps drops an
// address an earlier load put there: a packet from it is a new flow again.
func TestSetLocalRefusesOwnSources(t *testing.T) {
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "relay")
	site4 := netip.MustParsePrefix("203.0.113.10/32")
	was, is := netip.MustParseAddr("198.51.100.66"), netip.MustParseAddr("198.51.100.67")
	d, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetLocal([]netip.Addr{was}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := errors.Join(d.SetSitePrefixes([]netip.Prefix{site4}), d.SetLocal([]netip.Addr{is})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from netip.Addr
		want xlat.Reason
	}{
		{is, xlat.ReasonDropMartianOwn},
		{was, xlat.ReasonMiss},
	} {
		in := xlattest.Build(xlattest.Spec{Proto: 17, Src: c.from, SPort: 5000, Dst: site4.Addr(), DPort: 53, TTL: 64, Payload: []byte("own?")})
		before, err := d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Program(xlat.RoleRelayExt).Run(&ebpf.RunOptions{Data: in}); err != nil {
			t.Fatal(err)
		}
		after, err := d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		if after[c.want] != before[c.want]+1 {
			t.Errorf("a packet from %v: want one more %v (%d -> %d)", c.from, c.want, before[c.want], after[c.want])
		}
	}
}
