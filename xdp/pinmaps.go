package xdp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The pinned maps' layouts are checked map by map, so that an upgrade
// drops only what it must: a pinned map whose layout (mapLayout) is this
// build's is reused; one whose layout changed is replaced by a fresh map
// when losing what it holds costs nothing worth a refusal (it is soft
// state, softPins, or it holds nothing), and refused otherwise, naming
// the map and what it holds. Maps whose contents refer to each other
// (pinGroups) are judged and replaced together.
//
// The record, pinned as layoutPin, is a hash: a map's name, NUL-padded
// to the kernel's 16 bytes (BPF_OBJ_NAME_LEN), to its layout digest.
// Keyed by name rather than an array indexed by a map's place: a build
// that adds, drops or reorders maps leaves every other map's record
// where it was, and names this build does not pin are left alone.
//
// An older build meets this record under the name it kept its single
// digest by, as an array of one 32-byte value: its own spec of that map
// differs (kind, key size, entries), so creating it fails and it refuses
// the pins as incompatible, touching nothing.

const (
	layoutNameLen = 16
	layoutRecords = 256
)

type layoutName [layoutNameLen]byte

func layoutRecordSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name: layoutPin, Type: ebpf.Hash, KeySize: layoutNameLen, ValueSize: sha256.Size,
		MaxEntries: layoutRecords, Pinning: ebpf.PinByName,
	}
}

// tableHashes are the versions of the hashes that place keys in the
// tables that hash them themselves: a pinned table filled by another
// hash has its keys in the wrong buckets. Bump on a change.
var tableHashes = map[string]int{datapathMapFlowtab: 2, datapathMapCgTable: 1}

// pinGroups are the pinned maps whose contents refer to each other: a
// change to any member puts the whole group to the test, and a group is
// replaced whole (every member fresh) or refused, never one member fresh
// beside another's old entries. Checked while the last agent's programs
// may still run on the pins: a group replaced whole stays consistent
// even if they wrote to it in between (what they wrote is lost with the
// rest), where a member replaced alone could miss what they wrote
// beside it (a spill count of cg_bmeta for a key they put in
// cg_mappings).
var pinGroups = [][]string{
	// The flow table: its buckets, whose spill flags point into the
	// spill hashes (counted per bucket at load: Datapath.openTable), and
	// the carrier slots, whose spill flags point into flows4.
	{datapathMapFlowtab, datapathMapFlows, datapathMapFlows4, datapathMapCarriers},
	// The CGNAT: a mapping is a way of cg_table (or a key of the
	// cg_mappings spill, counted in cg_bmeta; of cg_mappings6 for
	// NAT64), its inbound slot in cg_slots (the subscriber's interface
	// ID beside it in cg_slots6), its port a bit of a cg_blocks block its
	// subscriber holds in cg_subs, and what its filters let in in
	// cg_perms. A fresh cg_table beside kept slots and blocks would leave
	// ports taken and inbound slots open that no mapping ends.
	{datapathMapCgTable, datapathMapCgBmeta, datapathMapCgMappings, datapathMapCgMappings6,
		datapathMapCgSlots, datapathMapCgSlots6, datapathMapCgBlocks, datapathMapCgSubs, datapathMapCgPerms},
}

// softPins are the pinned maps whose contents a load may lose when their
// layout changes, and why. Each one is replaced alone (or with its
// group, when that is replaced).
var softPins = map[string]string{
	datapathMapReasons: "counters: they start again from zero",
	datapathMapLocalAddrs: "written at each start: whole at the relay (SetLocal); at the edge its WAN " +
		"and LAN IPv4 addresses, and its LAN's IPv6 address once its session is welcomed",
	datapathMapSitePrefixes: "written whole at each start of the relay (SetSitePrefixes); unused at the edge",
	datapathMapTxPorts:      "written at each start of the edge (AddTXPort); unused at the relay",
	datapathMapCgRefuseAt:   "the refusal bound's clock: forgotten, its bucket is full",
	datapathMapCgPerms:      "a permission lost is recorded again by the subscriber's next packet to that remote",
	datapathMapNh6Cache:     "a cache: the next lookup fills it again",
}

// derivedPins are members of a group whose words mean something only
// beside a group-mate's entries, which are counted there: cg_bmeta's
// spill counts are cg_mappings' keys (its lock bits are held for a
// moment), cg_slots6's interface IDs are read beside a used cg_slots
// slot (and stay when it ends). They hold nothing of their own.
var derivedPins = map[string]bool{datapathMapCgBmeta: true, datapathMapCgSlots6: true}

// groupOf is the group name belongs to: itself alone if none.
func groupOf(name string) []string {
	for _, g := range pinGroups {
		if slices.Contains(g, name) {
			return g
		}
	}
	return []string{name}
}

// mapLayout hashes what a pinned map's users rely on: its kind, sizes,
// the fields of its key and value types and, for a table that hashes
// its keys itself, the hash's version (hashes). The kernel's own check
// (ebpf.MapSpec.Compatible) compares sizes only, so a build that moves
// fields around within the same size would read another build's entries
// wrong. A map sized by the configuration alone (sizedByConfig) records
// no size.
func mapLayout(name string, m *ebpf.MapSpec, size uint32, hashes map[string]int) [sha256.Size]byte {
	var b bytes.Buffer
	if v, ok := hashes[name]; ok {
		fmt.Fprintf(&b, "%s hash %d;", name, v)
	}
	writeMapShape(&b, name, m, size)
	return sha256.Sum256(b.Bytes())
}

// writeMapShape writes what both records hash of one map: its kind,
// sizes (none for one sized by the configuration alone) and flags, and
// the shape of its key and value types.
func writeMapShape(b *bytes.Buffer, name string, m *ebpf.MapSpec, size uint32) {
	if sizedByConfig[name] {
		size = 0
	}
	fmt.Fprintf(b, "%s %v %d %d %d %d;", name, m.Type, m.KeySize, m.ValueSize, size, m.Flags)
	layoutOf(b, m.Key, 0)
	layoutOf(b, m.Value, 0)
}

// pinnedNames are the names of spec's maps that are pinned, sorted.
func pinnedNames(spec *ebpf.CollectionSpec) []string {
	var names []string
	for name, m := range spec.Maps {
		if pinned(name, m) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// checkPins compares the maps pinned in dir with spec's (the record in
// dir says their layouts) and removes the pins of those a changed layout
// lets go, so the load pins fresh ones. It returns the record to write
// once the load has pinned this build's maps, or why the pins are
// refused; nothing is removed then.
func checkPins(spec *ebpf.CollectionSpec, dir string) (func() error, error) {
	rec, err := openLayoutRecord(spec, dir)
	if err != nil {
		return nil, err
	}
	have, err := readLayoutRecord(rec)
	rec.Close()
	if err != nil {
		return nil, err
	}
	// What changed, and why.
	changed := map[string]string{}
	for _, name := range pinnedNames(spec) {
		m := spec.Maps[name]
		old, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue // new here: the load pins it
		}
		if err != nil {
			return nil, incompatible(dir, fmt.Errorf("%s: %w", name, err))
		}
		size := old.MaxEntries()
		old.Close()
		got, ok := have[name]
		switch {
		case !ok:
			changed[name] = "no layout recorded"
		case got == mapLayout(name, m, m.MaxEntries, tableHashes):
		case size != m.MaxEntries && !sizedByConfig[name] && got == mapLayout(name, m, size, tableHashes):
			changed[name] = fmt.Sprintf("size changed from %d to %d entries", size, m.MaxEntries)
		default:
			changed[name] = "layout changed"
		}
	}
	remove, err := judge(dir, changed)
	if err != nil {
		return nil, incompatible(dir, err)
	}
	for _, name := range remove {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pin path: replace %s: %w", name, err)
		}
	}
	commit := func() error {
		rec, err := ebpf.LoadPinnedMap(filepath.Join(dir, layoutPin), nil)
		if err != nil {
			return fmt.Errorf("pin path: the layout record: %w", err)
		}
		defer rec.Close()
		for _, name := range pinnedNames(spec) {
			m := spec.Maps[name]
			if err := rec.Update(nameKey(name), mapLayout(name, m, m.MaxEntries, tableHashes), ebpf.UpdateAny); err != nil {
				return fmt.Errorf("pin path: record the layout of %s: %w", name, err)
			}
		}
		return nil
	}
	return commit, nil
}

// judge decides, for the changed maps (name -> why), which pins to
// remove: a soft map alone; a group whose members are all soft or hold
// nothing, whole. Any other change refuses the pins, with an error that
// names each such map and what it (or its group) holds.
func judge(dir string, changed map[string]string) ([]string, error) {
	var remove []string
	var refused []string
	done := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(changed)) {
		if done[name] {
			continue
		}
		if _, soft := softPins[name]; soft {
			done[name] = true
			remove = append(remove, name)
			continue
		}
		group := groupOf(name)
		held := map[string]int{}
		for _, member := range group {
			done[member] = done[member] || changed[member] != ""
			if _, soft := softPins[member]; soft || derivedPins[member] {
				continue
			}
			// A member whose layout is this build's (or only its size
			// changed) is read as this build reads it; a changed one
			// only as bytes (keys of a hash; elements of an array not
			// all zero).
			why, isChanged := changed[member]
			n, err := pinnedEntries(dir, member, !isChanged || strings.HasPrefix(why, "size changed"))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", member, err)
			}
			if n > 0 {
				held[member] = n
			}
		}
		if len(held) == 0 {
			for _, member := range group {
				if _, err := os.Stat(filepath.Join(dir, member)); err == nil {
					remove = append(remove, member)
				}
			}
			continue
		}
		for _, member := range group {
			why, ok := changed[member]
			if !ok || softPins[member] != "" {
				continue
			}
			if n := held[member]; n > 0 {
				refused = append(refused, fmt.Sprintf("%s: %s and it holds %s", member, why, entries(n)))
				continue
			}
			var others []string
			for _, o := range group {
				if held[o] > 0 {
					others = append(others, fmt.Sprintf("%s %d", o, held[o]))
				}
			}
			refused = append(refused, fmt.Sprintf("%s: %s and its group holds entries (%s)", member, why, strings.Join(others, ", ")))
		}
	}
	if len(refused) > 0 {
		return nil, errors.New(strings.Join(refused, "; "))
	}
	slices.Sort(remove)
	return slices.Compact(remove), nil
}

func entries(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

func nameKey(name string) layoutName {
	var k layoutName
	copy(k[:], name)
	return k
}

// readLayoutRecord reads the record: map name -> layout digest.
func readLayoutRecord(rec *ebpf.Map) (map[string][sha256.Size]byte, error) {
	out := map[string][sha256.Size]byte{}
	var (
		k layoutName
		v [sha256.Size]byte
	)
	it := rec.Iterate()
	for it.Next(&k, &v) {
		out[string(bytes.TrimRight(k[:], "\x00"))] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("pin path: the layout record: %w", err)
	}
	return out, nil
}

// openLayoutRecord opens (or makes) the record in dir, converting the
// single-digest record of the build before this one (legacyPinLayout)
// when the pins it describes are exactly this build's layout.
func openLayoutRecord(spec *ebpf.CollectionSpec, dir string) (*ebpf.Map, error) {
	rec, err := ebpf.NewMapWithOptions(layoutRecordSpec(), ebpf.MapOptions{PinPath: dir})
	if err == nil {
		return rec, nil
	}
	if !errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, incompatible(dir, fmt.Errorf("%s: %w", layoutPin, err))
	}
	return migrateLayoutRecord(spec, dir)
}

// migrateLayoutRecord converts the record of the build before this one,
// which kept one digest over every pinned map (an array of one 32-byte
// value), to this one's. That digest equal to what this build's maps at
// the pinned sizes give (legacyPinLayout) says each pin has this build's
// layout: each gets its digest, computed with the hash versions of that
// build (legacyTableHashes), then the per-map check goes on as usual. A
// digest that differs is an older build's: refused as it was. This can
// go once no pins of that build remain.
func migrateLayoutRecord(spec *ebpf.CollectionSpec, dir string) (*ebpf.Map, error) {
	path := filepath.Join(dir, layoutPin)
	old, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return nil, incompatible(dir, fmt.Errorf("%s: %w", layoutPin, err))
	}
	defer old.Close()
	if old.Type() != ebpf.Array || old.KeySize() != 4 || old.ValueSize() != sha256.Size || old.MaxEntries() != 1 {
		return nil, incompatible(dir, fmt.Errorf("%s: a layout record of another build (%v, %d entries)", layoutPin, old.Type(), old.MaxEntries()))
	}
	var have [sha256.Size]byte
	if err := old.Lookup(uint32(0), &have); err != nil {
		return nil, fmt.Errorf("pin path: %s: %w", layoutPin, err)
	}
	sizes := map[string]uint32{}
	for _, name := range pinnedNames(spec) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, incompatible(dir, fmt.Errorf("%s: %w", name, err))
		}
		sizes[name] = m.MaxEntries()
		m.Close()
	}
	sizeOf := func(name string, m *ebpf.MapSpec) uint32 {
		if n, ok := sizes[name]; ok {
			return n
		}
		return m.MaxEntries
	}
	switch {
	case have == legacyPinLayout(spec, sizeOf):
	case have == [sha256.Size]byte{} && len(sizes) == 0:
		// Made, and never filled, over no pins: a new folder.
	default:
		return nil, incompatible(dir, errors.New("table layout changed: pinned by an older build"))
	}
	// The new record is filled before it takes the old one's place, so
	// a crash leaves one or the other.
	rs := layoutRecordSpec()
	rs.Pinning = ebpf.PinNone
	rec, err := ebpf.NewMap(rs)
	if err != nil {
		return nil, err
	}
	for name, size := range sizes {
		if err := rec.Update(nameKey(name), mapLayout(name, legacySpec(name, spec.Maps[name]), size, legacyTableHashes), ebpf.UpdateAny); err != nil {
			rec.Close()
			return nil, fmt.Errorf("pin path: convert %s: %w", layoutPin, err)
		}
	}
	if err := os.Remove(path); err != nil {
		rec.Close()
		return nil, fmt.Errorf("pin path: convert %s: %w", layoutPin, err)
	}
	if err := rec.Pin(path); err != nil {
		rec.Close()
		return nil, fmt.Errorf("pin path: convert %s: %w", layoutPin, err)
	}
	return rec, nil
}

// legacyTableHashes are the table hash versions of the single-digest
// record's build (frozen: tableHashes moves on).
var legacyTableHashes = map[string]int{datapathMapFlowtab: 2, datapathMapCgTable: 1}

// legacySpec is pinned map name as the single-digest build laid it out:
// m, but for the maps laid out otherwise since. Its digest is made of
// them, and the converted record gives them their old layout, so the
// check that follows sees the change. cg_perms was a hash of one byte a
// permission (now least recently used, of the permission's inside end:
// soft, replaced).
func legacySpec(name string, m *ebpf.MapSpec) *ebpf.MapSpec {
	if name != datapathMapCgPerms {
		return m
	}
	old := m.Copy()
	old.Type, old.ValueSize, old.Value = ebpf.Hash, 1, &btf.Int{Name: "__u8", Size: 1}
	return old
}

// legacyPinLayout is the single digest over every pinned map that the
// build before the per-map record kept, for pinned sizes size: only to
// recognise its pins (migrateLayoutRecord).
func legacyPinLayout(spec *ebpf.CollectionSpec, size func(string, *ebpf.MapSpec) uint32) [sha256.Size]byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "flowtab hash %d, cg_table hash %d;", legacyTableHashes[datapathMapFlowtab], legacyTableHashes[datapathMapCgTable])
	for _, name := range pinnedNames(spec) {
		m := legacySpec(name, spec.Maps[name])
		writeMapShape(&b, name, m, size(name, m))
	}
	return sha256.Sum256(b.Bytes())
}

// entryUse counts the entries one array element holds (its value, each
// CPU's one after the other for a per-CPU array) where all zero is not
// empty: ways that keep their bytes, or a generation, once their key
// goes; blocks that keep their address once given back; slots that keep
// their entry. Read as this build lays them out.
var entryUse = map[string]func(v []byte) int{
	datapathMapFlowtab: func(v []byte) int { // a way is used while its key's first word is not zero
		n := 0
		for j := range flowWays {
			if binary.LittleEndian.Uint64(v[j*wayLen:]) != 0 {
				n++
			}
		}
		return n
	},
	datapathMapCgTable: func(v []byte) int {
		n := 0
		for j := range cgWays {
			if binary.LittleEndian.Uint64(v[j*cgWayLen:])&cgWayUsed != 0 {
				n++
			}
		}
		return n
	},
	datapathMapCgBlocks: func(v []byte) int { // ports taken
		for pl := range 3 {
			if binary.LittleEndian.Uint32(v[cgUsedOff+4*pl:]) != 0 {
				return 1
			}
		}
		return 0
	},
	datapathMapCarriers: func(v []byte) int { // the agent writes every CPU's copy
		if v[unsafe.Offsetof(datapathCarrierSlot{}.Used)] != 0 {
			return 1
		}
		return 0
	},
}

// pinnedEntries counts what the map pinned in dir as name holds: the
// keys of a hash; the elements of an array in use, read as this build
// lays them out if known (entryUse), else those not all zero.
func pinnedEntries(dir, name string, known bool) (int, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer m.Close()
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
	default:
		return hashKeys(m)
	}
	use := entryUse[name]
	if !known || use == nil {
		use = func(v []byte) int {
			if slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
				return 1
			}
			return 0
		}
	}
	n := 0
	err = eachElement(m, func(v []byte) { n += use(v) })
	return n, err
}

// hashKeys counts m's keys. The last agent's programs may be putting
// keys in and taking them out: the walk is bounded, and a count is what
// the error shows, not what the decision rests on (any key at all).
func hashKeys(m *ebpf.Map) (int, error) {
	n := 0
	var k any
	for n <= 2*int(m.MaxEntries()) {
		next, err := m.NextKeyBytes(k)
		if err != nil {
			return n, err
		}
		if next == nil {
			break
		}
		k, n = next, n+1
	}
	return n, nil
}

// eachElement calls fn with each element of array m, read in batches,
// as bytes: its value (a per-CPU array's every CPU's, one after the
// other). Whatever the layout: it reads the sizes of the pinned map.
func eachElement(m *ebpf.Map, fn func(v []byte)) error {
	per := 1
	if m.Type() == ebpf.PerCPUArray {
		var err error
		if per, err = ebpf.PossibleCPU(); err != nil {
			return err
		}
	}
	size := int(m.ValueSize())
	batch := max(1, min(1024, int(m.MaxEntries())))
	keys := make([]uint32, batch)
	vals := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(size, reflect.TypeFor[byte]())), batch*per, batch*per)
	raw := unsafe.Slice((*byte)(vals.UnsafePointer()), batch*per*size)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals.Interface(), nil)
		for i := range n {
			fn(raw[i*per*size : (i+1)*per*size])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
