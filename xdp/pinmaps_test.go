package xdp

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/bpffs"
	"github.com/unmap-dev/unmap/test/priv"
)

// newBuild is the datapath's spec with the value layout of the named
// maps changed, as another build's would be: the value wrapped in a
// struct of the same size, so the kernel (which compares sizes) and the
// programs take it, and only the layout record tells.
func newBuild(t *testing.T, names ...string) *ebpf.CollectionSpec {
	t.Helper()
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		m := spec.Maps[name]
		if m == nil {
			t.Fatalf("no map %s", name)
		}
		m.Value = &btf.Struct{Name: "v2", Size: m.ValueSize, Members: []btf.Member{{Name: "v2", Type: m.Value}}}
	}
	return spec
}

// pinID is the kernel's id of the map pinned in dir as name: a new id is
// a fresh map.
func pinID(t *testing.T, dir, name string) ebpf.MapID {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

func pinIDs(t *testing.T, dir string, names []string) map[string]ebpf.MapID {
	ids := map[string]ebpf.MapID{}
	for _, n := range names {
		ids[n] = pinID(t, dir, n)
	}
	return ids
}

// checkIDs says which of names were replaced (fresh) and kept against
// before, and fails the test where that is not want.
func checkIDs(t *testing.T, dir string, before map[string]ebpf.MapID, wantFresh bool) {
	t.Helper()
	for name, id := range before {
		if fresh := pinID(t, dir, name) != id; fresh != wantFresh {
			t.Errorf("%s: fresh %v, want %v", name, fresh, wantFresh)
		}
	}
}

// hasFlows checks that d holds the pair pinFlow makes.
func hasFlows(t *testing.T, d *Datapath) {
	t.Helper()
	got, err := d.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	out, back := pinFlow()
	if len(got) != 2 || !slices.Contains(got, out) || !slices.Contains(got, back) {
		t.Errorf("mappings %v, want the pinned pair", got)
	}
}

// edgePins loads an edge's datapath on a new pin folder and leaves a
// flow in it.
func edgePins(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "edge")
	d, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutPair(pinFlow()); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

var cgnatGroup = pinGroups[1]

// An edge holds the CGNAT's maps too, sized 1 and never written: a build
// that changes only one of them loads on an edge's pins, the flow table
// kept with its flows, the CGNAT's maps fresh (their group whole).
func TestPinnedEdgeKeepsFlowsWhenCGNATMapsChange(t *testing.T) {
	dir := edgePins(t)
	flowIDs := pinIDs(t, dir, pinGroups[0])
	cgIDs := pinIDs(t, dir, cgnatGroup)
	d, err := loadSpec(newBuild(t, datapathMapCgSlots), pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatalf("edge load with a changed cg_slots: %v", err)
	}
	hasFlows(t, d)
	d.Close()
	checkIDs(t, dir, flowIDs, false)
	checkIDs(t, dir, cgIDs, true)
	// The record now holds the new layout: the same build loads again
	// on the same maps.
	cgIDs = pinIDs(t, dir, cgnatGroup)
	d, err = loadSpec(newBuild(t, datapathMapCgSlots), pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatalf("second load of the new build: %v", err)
	}
	hasFlows(t, d)
	d.Close()
	checkIDs(t, dir, cgIDs, false)
}

// A changed flow table holding flows is refused, the error naming it and
// what it holds; nothing is removed: the old build loads again on it.
func TestPinnedFlowTableChangeRefused(t *testing.T) {
	dir := edgePins(t)
	ids := pinIDs(t, dir, pinGroups[0])
	_, err := loadSpec(newBuild(t, datapathMapFlowtab), pinCfg, Options{PinPath: dir})
	if !errors.Is(err, ErrPinIncompatible) || !strings.Contains(err.Error(), "flowtab: layout changed and it holds 1 entry") ||
		!strings.Contains(err.Error(), "--unpin") {
		t.Fatalf("load with a changed flow table holding a flow: %v; want ErrPinIncompatible naming flowtab and --unpin", err)
	}
	checkIDs(t, dir, ids, false)
	d, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatalf("the old build after the refusal: %v", err)
	}
	hasFlows(t, d)
	d.Close()
}

// relayPins loads a relay's datapath with the CGNAT on a new pin folder;
// with a mapping (a subscriber's packet through relay_sub) if mapped.
func relayPins(t *testing.T, mapped bool) (string, xlat.Config, Options) {
	t.Helper()
	priv.Require(t)
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "relay")
	c := cgnattest.Config(cgnat.EIF)
	opts := Options{PinPath: dir, NoMissLimit: true, NoRefuseLimit: true, CGNAT: c, CGNATMappings: 1 << 12}
	xc := xlattest.Config(xlattest.RelayAddr)
	d, err := Load(xc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !mapped {
		return dir, xc, opts
	}
	if err := errors.Join(d.SetFIB(false), d.GrantBlock(cgnattest.SubA, c.BlockID(0, 0))); err != nil {
		t.Fatal(err)
	}
	in := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: 5000, Dst: cgnattest.R4, DPort: 53})
	if v, _ := runRole(t, d, xlat.RoleRelaySub, in); v != xlat.Pass {
		t.Fatalf("subscriber packet: %v", v)
	}
	if ms, err := d.CGNATMappings(); err != nil || len(ms) != 1 {
		t.Fatalf("mappings %v, %v; want one", ms, err)
	}
	return dir, xc, opts
}

// A relay holding a mapping refuses a build whose cg_slots changed,
// naming it; the same relay with no mapping (nothing granted) takes it,
// the CGNAT's maps fresh.
func TestPinnedCGNATChange(t *testing.T) {
	t.Run("mapped", func(t *testing.T) {
		dir, xc, opts := relayPins(t, true)
		ids := pinIDs(t, dir, cgnatGroup)
		_, err := loadSpec(newBuild(t, datapathMapCgSlots), xc, opts)
		if !errors.Is(err, ErrPinIncompatible) || !strings.Contains(err.Error(), "cg_slots: layout changed and it holds 1 entry") {
			t.Fatalf("load with a changed cg_slots on a mapping: %v; want ErrPinIncompatible naming cg_slots", err)
		}
		checkIDs(t, dir, ids, false)
	})
	t.Run("empty", func(t *testing.T) {
		dir, xc, opts := relayPins(t, false)
		ids := pinIDs(t, dir, cgnatGroup)
		flowIDs := pinIDs(t, dir, pinGroups[0])
		d, err := loadSpec(newBuild(t, datapathMapCgSlots), xc, opts)
		if err != nil {
			t.Fatalf("load with a changed cg_slots on an empty CGNAT: %v", err)
		}
		d.Close()
		checkIDs(t, dir, ids, true)
		checkIDs(t, dir, flowIDs, false)
	})
}

// A member that holds nothing of its own (cg_bmeta) changed: its group
// is judged whole. Beside a mapping it is refused, naming it and what
// its group holds, and no member is replaced; with no mapping every
// member is replaced, none kept. The same for the flow table's spill
// (empty) beside a flow in the table.
func TestPinnedGroupWhole(t *testing.T) {
	t.Run("mapped", func(t *testing.T) {
		dir, xc, opts := relayPins(t, true)
		ids := pinIDs(t, dir, cgnatGroup)
		_, err := loadSpec(newBuild(t, datapathMapCgBmeta), xc, opts)
		if !errors.Is(err, ErrPinIncompatible) || !strings.Contains(err.Error(), "cg_bmeta: layout changed and its group holds entries (cg_table 1,") {
			t.Fatalf("load with a changed cg_bmeta beside a mapping: %v; want ErrPinIncompatible naming cg_bmeta and cg_table", err)
		}
		checkIDs(t, dir, ids, false)
	})
	t.Run("empty", func(t *testing.T) {
		dir, xc, opts := relayPins(t, false)
		ids := pinIDs(t, dir, cgnatGroup)
		d, err := loadSpec(newBuild(t, datapathMapCgBmeta), xc, opts)
		if err != nil {
			t.Fatalf("load with a changed cg_bmeta on an empty CGNAT: %v", err)
		}
		d.Close()
		checkIDs(t, dir, ids, true)
	})
	t.Run("spill", func(t *testing.T) {
		dir := edgePins(t)
		ids := pinIDs(t, dir, pinGroups[0])
		_, err := loadSpec(newBuild(t, datapathMapFlows4), pinCfg, Options{PinPath: dir})
		if !errors.Is(err, ErrPinIncompatible) || !strings.Contains(err.Error(), "flows4: layout changed and its group holds entries (flowtab 1, carriers 1)") {
			t.Fatalf("load with a changed flows4 beside a flow: %v; want ErrPinIncompatible naming flows4 and flowtab", err)
		}
		checkIDs(t, dir, ids, false)
	})
}

// Soft state (the reason counters) is replaced alone when it changes:
// the flows stay.
func TestPinnedSoftMapReplaced(t *testing.T) {
	dir := edgePins(t)
	flowIDs := pinIDs(t, dir, pinGroups[0])
	was := pinID(t, dir, datapathMapReasons)
	d, err := loadSpec(newBuild(t, datapathMapReasons), pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatalf("load with changed reason counters: %v", err)
	}
	hasFlows(t, d)
	d.Close()
	checkIDs(t, dir, flowIDs, false)
	if pinID(t, dir, datapathMapReasons) == was {
		t.Error("the changed reason counters were kept")
	}
}

// writeLegacyRecord puts the single-digest record of the build before
// the per-map one in dir, holding sum.
func writeLegacyRecord(t *testing.T, dir string, sum [sha256.Size]byte) {
	t.Helper()
	path := filepath.Join(dir, layoutPin)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: layoutPin, Type: ebpf.Array, KeySize: 4, ValueSize: sha256.Size, MaxEntries: 1, Pinning: ebpf.PinByName,
	}, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Update(uint32(0), sum, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
}

// Pins whose record is the single digest of the build before the
// per-map record: that digest computed for this build's maps (exactly
// this build's layout) is converted to the per-map record and the flows
// kept; another digest (an older build's) is refused.
func TestPinnedLegacyRecord(t *testing.T) {
	dir := edgePins(t)
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := configure(spec, pinCfg, Options{}, nil); err != nil {
		t.Fatal(err)
	}
	this := legacyPinLayout(spec, func(_ string, m *ebpf.MapSpec) uint32 { return m.MaxEntries })

	writeLegacyRecord(t, dir, [sha256.Size]byte{1})
	_, err = Load(pinCfg, Options{PinPath: dir})
	if !errors.Is(err, ErrPinIncompatible) || !strings.Contains(err.Error(), "older build") {
		t.Fatalf("load on an older build's record: %v; want ErrPinIncompatible saying so", err)
	}

	writeLegacyRecord(t, dir, this)
	ids := pinIDs(t, dir, pinnedNames(spec))
	perms := ids[datapathMapCgPerms]
	delete(ids, datapathMapCgPerms)
	d, err := Load(pinCfg, Options{PinPath: dir})
	if err != nil {
		t.Fatalf("load on this build's single-digest record: %v", err)
	}
	hasFlows(t, d)
	d.Close()
	checkIDs(t, dir, ids, false)
	// The record converted says cg_perms as that build laid it out
	// (legacySpec): the check replaces it, soft.
	if pinID(t, dir, datapathMapCgPerms) == perms {
		t.Errorf("cg_perms kept: the converted record gave it this build's layout")
	}
	rec, err := ebpf.LoadPinnedMap(filepath.Join(dir, layoutPin), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	have, err := readLayoutRecord(rec)
	if err != nil || rec.Type() != ebpf.Hash {
		t.Fatalf("record after the load: %v, %v; want the per-map record", rec.Type(), err)
	}
	for _, name := range pinnedNames(spec) {
		if have[name] != mapLayout(name, spec.Maps[name], spec.Maps[name].MaxEntries, tableHashes) {
			t.Errorf("%s: the converted record does not hold its layout", name)
		}
	}
}

// An older build meets the per-map record under the name it kept its
// single digest by: its own spec of that map (an array of one 32-byte
// value) does not fit it, so it refuses the pins, touching nothing.
func TestPinnedRecordRefusedByOlderBuild(t *testing.T) {
	dir := edgePins(t)
	_, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: layoutPin, Type: ebpf.Array, KeySize: 4, ValueSize: sha256.Size, MaxEntries: 1, Pinning: ebpf.PinByName,
	}, ebpf.MapOptions{PinPath: dir})
	if !errors.Is(err, ebpf.ErrMapIncompatible) {
		t.Fatalf("the older build's record on the new one: %v; want ebpf.ErrMapIncompatible (which it reports as ErrPinIncompatible)", err)
	}
}

// Every pinned map is classified: soft, or counted (a hash's keys, an
// array's elements), or derived from a group-mate; a map added to the C
// must be placed here.
func TestPinnedMapsClassified(t *testing.T) {
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pinnedNames(spec) {
		_, soft := softPins[name]
		inGroup := len(groupOf(name)) > 1
		if !soft && !inGroup {
			t.Errorf("%s: neither soft state nor in a group (pinGroups)", name)
		}
		if derivedPins[name] && !inGroup {
			t.Errorf("%s: derived but in no group", name)
		}
	}
	for _, g := range pinGroups {
		for _, name := range g {
			if m := spec.Maps[name]; m == nil || !pinned(name, m) {
				t.Errorf("group member %s is not a pinned map", name)
			}
		}
	}
}
