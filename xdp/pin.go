package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/unmap-dev/unmap/session/xlat"
	"golang.org/x/sys/unix"
)

// Pinning keeps a datapath alive across agent restarts: its maps and XDP
// links are pinned in a bpffs folder (Options.PinPath), so the programs
// go on forwarding while the agent is down, and the next agent loads its
// programs on the same maps and swaps them into the same links.
//
// Only state worth keeping is pinned: the flow, address, prefix and
// device tables and the reason counters. The miss ring, the miss path's
// rate buckets, the next-hop cache and the programs' data sections are
// fresh with each load: a miss nobody read while the agent was down is
// lost anyway (its sender retries), a bucket forgotten is a full one, a
// next hop forgotten is looked up again, and the run-time switches are
// set again by the agent. (So the buckets are not in the layout record
// either: resizing them never makes the pins of another build unusable.)

// ErrPinIncompatible is returned by Load when a map pinned in
// Options.PinPath has another layout than this build's (or another size)
// and holds what a replacement would lose (pinmaps.go); the pins must
// then be removed (Unpin, `unmap edge --unpin`), which ends the flows
// they hold. The error (an *IncompatibleError) names the maps.
var ErrPinIncompatible = errors.New("pinned maps do not match this build")

// layoutPin is the name of the map, made here rather than by the object,
// that records the pinned maps' layouts (pinmaps.go).
const layoutPin = "unmap_layout"

// ModeKept is how a program got "attached" when it replaced the program
// of a pinned link the last agent left: the link keeps its mode.
const ModeKept Mode = "kept"

// pinned reports whether a map of the object survives restarts. Not the
// miss bound's state: its buckets start full with each load, and its
// exemptions are the live sessions' of the agent that loads it. Nor the
// next-hop cache: its entries hold a generation of the data section,
// which starts again with each load.
func pinned(name string, m *ebpf.MapSpec) bool {
	return !strings.HasPrefix(name, ".") && m.Type != ebpf.RingBuf &&
		name != datapathMapMissSrcs && name != datapathMapMissExempt && name != datapathMapNhCache
}

// sizedByConfig are pinned maps whose size follows the configuration and
// whose entries are soft state: the CGNAT's filter permissions, sized for
// every mapping under the dependent filters (NAT44's and NAT64's: twice
// max_mappings with inside6, whose setting changes the layout anyway)
// and to one entry under endpoint-independent filtering. A restart with another size (another
// filtering mode) replaces the pinned map instead of refusing the pins:
// the mappings stay, and nothing is lost, as the only sizes are the
// dependent modes' (which share one) and endpoint-independent's, which
// records no permission and reads none.
var sizedByConfig = map[string]bool{datapathMapCgPerms: true}

// pinSpec marks the maps to pin and checks the maps already pinned in
// dir against this build's layout, map by map (pinmaps.go): it removes
// the pins a changed layout lets go, or refuses. It returns what records
// this build's layouts once the load has pinned its maps.
func pinSpec(spec *ebpf.CollectionSpec, dir string) (func() error, error) {
	if err := checkBPFFS(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pin path: %w", err)
	}
	for name, m := range spec.Maps {
		if pinned(name, m) {
			m.Pinning = ebpf.PinByName
		}
	}
	record, err := checkPins(spec, dir)
	if err != nil {
		return nil, err
	}
	// Once the pins are taken: a refusal removes nothing.
	for name, m := range spec.Maps {
		if sizedByConfig[name] {
			if err := replaceResized(dir, m); err != nil {
				return nil, err
			}
		}
	}
	return record, nil
}

// replaceResized removes m's pin in dir when the pinned map has another
// size than m: the load then pins a new one (sizedByConfig).
func replaceResized(dir string, m *ebpf.MapSpec) error {
	path := filepath.Join(dir, m.Name)
	old, err := ebpf.LoadPinnedMap(path, nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return incompatible(dir, fmt.Errorf("%s: %w", m.Name, err))
	}
	defer old.Close()
	if old.MaxEntries() == m.MaxEntries {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("pin path: replace %s: %w", m.Name, err)
	}
	return nil
}

// IncompatibleError is an ErrPinIncompatible with its detail: the pin
// folder and why its pins were refused (the maps and what they hold).
type IncompatibleError struct {
	Dir string
	Why error
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("%v (%s: %v): remove them with `unmap edge --unpin` (or rm -r %s); this ends the flows they hold", ErrPinIncompatible, e.Dir, e.Why, e.Dir)
}

func (e *IncompatibleError) Is(target error) bool { return target == ErrPinIncompatible }
func (e *IncompatibleError) Unwrap() error        { return e.Why }

func incompatible(dir string, err error) error {
	return &IncompatibleError{Dir: dir, Why: err}
}

// layoutOf writes a BTF type's shape: names, offsets and sizes of its
// members, nested a few levels.
func layoutOf(b *bytes.Buffer, t btf.Type, depth int) {
	if t == nil || depth > 4 {
		return
	}
	t = btf.UnderlyingType(t)
	size, _ := btf.Sizeof(t)
	fmt.Fprintf(b, "(%T %d", t, size)
	var members []btf.Member
	switch c := t.(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	}
	for _, m := range members {
		fmt.Fprintf(b, " %s@%d:", m.Name, m.Offset)
		layoutOf(b, m.Type, depth+1)
	}
	if a, ok := t.(*btf.Array); ok {
		fmt.Fprintf(b, " [%d]", a.Nelems)
		layoutOf(b, a.Type, depth+1)
	}
	b.WriteString(")")
}

// checkBPFFS refuses a pin path outside a bpffs mount, where pinning
// would fail with a less helpful error.
func checkBPFFS(dir string) error {
	ok, err := IsBPFFS(dir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("pin path %s is not on a bpf filesystem (mount one: mount -t bpf bpf /sys/fs/bpf)", dir)
	}
	return nil
}

// AttachPinned attaches the role's program to an interface through a
// link pinned at path: a link the last agent pinned there for the same
// interface gets this program swapped in atomically (no packet sees no
// program), anything else is replaced by a new link, which is pinned.
func (d *Datapath) AttachPinned(ifindex int, r xlat.Role, path string) (link.Link, Mode, error) {
	prog := d.Program(r)
	if prog == nil {
		return nil, "", fmt.Errorf("no program for role %v", r)
	}
	old, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		if info, ierr := old.Info(); ierr == nil && info.XDP() != nil && int(info.XDP().Ifindex) == ifindex {
			if err := old.Update(prog); err != nil {
				old.Close()
				return nil, "", fmt.Errorf("replace the program of pinned link %s: %w", path, err)
			}
			return old, ModeKept, nil
		}
		// Another interface's (or a deleted one's): not ours to keep.
		err = errors.Join(old.Unpin(), old.Close())
		if err != nil {
			return nil, "", fmt.Errorf("stale pinned link %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("pinned link %s: %w", path, err)
	}
	l, mode, err := d.Attach(ifindex, r)
	if err != nil {
		return nil, "", err
	}
	if err := l.Pin(path); err != nil {
		l.Close()
		return nil, "", fmt.Errorf("pin link: %w", err)
	}
	return l, mode, nil
}

// Unpin removes what a datapath pinned in dir (maps and links, and the
// folder). Programs still attached through a removed link are detached
// once no agent holds it; flows in the removed maps are gone.
//
// It removes nothing but a folder inside a bpf filesystem: pin_path comes
// from a config file, and a relative or mistaken path must not make this
// a recursive delete of an ordinary folder (or of every pin on the host,
// for the bpffs mount itself).
func Unpin(dir string) error {
	if err := checkUnpin(dir); err != nil {
		return fmt.Errorf("unpin: refusing %q: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	return nil
}

// checkUnpin says why dir is not a pin folder Unpin may remove: it must
// be an absolute path, a real folder (not a link to one) inside a bpffs
// mount, and not the mount itself. A dir that does not exist is fine:
// there is nothing to remove.
func checkUnpin(dir string) error {
	if !filepath.IsAbs(dir) {
		return errors.New("not an absolute path")
	}
	dir = filepath.Clean(dir)
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return errors.New("not a folder (a pin path is a folder of pins; a link to one is not followed)")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return errors.New("not on a bpf filesystem (statfs magic), so not a pin path")
	}
	// A mount's root is on another device than its parent folder.
	var here, up unix.Stat_t
	if err := unix.Stat(dir, &here); err != nil {
		return err
	}
	if err := unix.Stat(filepath.Dir(dir), &up); err != nil || up.Dev != here.Dev {
		return errors.New("the root of a bpf filesystem: it holds every program's pins, not only this agent's")
	}
	return nil
}

// Mappings lists the flow table's entries (what a restarted agent
// rebuilds its table from). The counters are left out.
func (d *Datapath) Mappings() ([]Mapping, error) {
	var out []Mapping
	add := func(k datapathFlowKey, e datapathFlowEntry) {
		if m, err := mappingOf(k, e); err == nil {
			out = append(out, m) // else not an entry an agent made: the caller cannot use it
		}
	}
	var (
		k    datapathFlowKey
		k4   datapathFlowKey4
		vals []datapathFlowEntry
	)
	d.mu.Lock()
	d.tab.each(func(kb, eb []byte) {
		if m, err := parseMapping(kb, eb); err == nil {
			out = append(out, m)
		}
	})
	d.mu.Unlock()
	it := d.objs.Flows.Iterate()
	for it.Next(&k, &vals) {
		if len(vals) > 0 {
			add(k, vals[0])
		}
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("flow table: %w", err)
	}
	it = d.objs.Flows4.Iterate()
	for it.Next(&k4, &vals) {
		if len(vals) > 0 {
			add(key4(k4), vals[0])
		}
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("IPv4 flow table: %w", err)
	}
	// The carrier slots: the key is the slot's place (protocol plane,
	// local port) and the far end it holds.
	c := d.cfg
	if n := slotCount(c); n > 1 {
		per := uint32(c.PortHi) - uint32(c.PortLo) + 1
		b := c.CarrierAddr.As4()
		for idx := range n {
			slot, err := d.readSlot(idx)
			if err != nil {
				return out, err
			}
			if len(slot) == 0 || slot[0].Used != 1 {
				continue
			}
			proto := [slotPlanes]uint8{6, 17, 1}[idx/per]
			add(datapathFlowKey{Family: 4, Proto: proto, Sport: slot[0].Sport, Dport: bits.ReverseBytes16(c.PortLo + uint16(idx%per)),
				Saddr: [4]uint32{slot[0].Saddr}, Daddr: [4]uint32{le32(b[:])}}, slot[0].E)
		}
	}
	return out, nil
}

// mappingOf is the model's view of a C key and entry, the inverse of cKey
// and cEntry.
func mappingOf(k datapathFlowKey, e datapathFlowEntry) (Mapping, error) {
	var kb, eb bytes.Buffer
	if err := binary.Write(&kb, binary.LittleEndian, k); err != nil {
		return Mapping{}, err
	}
	if err := binary.Write(&eb, binary.LittleEndian, e); err != nil {
		return Mapping{}, err
	}
	return parseMapping(kb.Bytes(), eb.Bytes())
}

// parseMapping decodes struct flow_key and struct flow_entry as
// xlat.Key.MarshalBinary and xlat.Entry.MarshalBinary lay them out.
func parseMapping(kb, eb []byte) (Mapping, error) {
	if len(kb) < xlat.KeySize || len(eb) < 40 {
		return Mapping{}, errors.New("short flow record")
	}
	var m Mapping
	var err error
	if m.Key, err = decodeKey(kb); err != nil {
		return m, err
	}
	a := xlat.Action(eb[0])
	want4 := a == xlat.ActXlat64 || a == xlat.ActWrap64 || a == xlat.ActNAPT44
	m.Entry = xlat.Entry{
		Action: a, Proto: eb[1],
		SPort: binary.BigEndian.Uint16(eb[4:]), DPort: binary.BigEndian.Uint16(eb[6:]),
		Src: addrOf(eb[8:24], want4), Dst: addrOf(eb[24:40], want4),
	}
	if err := m.Entry.Validate(); err != nil {
		return m, err
	}
	return m, nil
}

// decodeKey is xlat.Key.MarshalBinary's inverse.
func decodeKey(kb []byte) (xlat.Key, error) {
	var is4 bool
	switch kb[0] {
	case 4:
		is4 = true
	case 6:
	default:
		return xlat.Key{}, fmt.Errorf("flow key family %d", kb[0])
	}
	return xlat.Key{
		Proto: kb[1],
		SPort: binary.BigEndian.Uint16(kb[2:]), DPort: binary.BigEndian.Uint16(kb[4:]),
		Src: addrOf(kb[8:24], is4), Dst: addrOf(kb[24:40], is4),
	}, nil
}

func addrOf(b []byte, is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16]))
}

// seedPin is the map, made here like layoutPin, that keeps the flow
// table's hash seed beside the pinned table: a program loaded later must
// hash keys to the buckets they were put in.
const seedPin = "unmap_seed"

// pinnedSeed returns the seed kept in dir, making one if there is none.
func pinnedSeed(dir string) (tableSeed, error) {
	if err := checkBPFFS(dir); err != nil {
		return tableSeed{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tableSeed{}, fmt.Errorf("pin path: %w", err)
	}
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: seedPin, Type: ebpf.Array, KeySize: 4, ValueSize: 40, MaxEntries: 1,
		Pinning: ebpf.PinByName,
	}, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		return tableSeed{}, incompatible(dir, err)
	}
	defer m.Close()
	var b [40]byte
	if err := m.Lookup(uint32(0), &b); err != nil {
		return tableSeed{}, err
	}
	if b != [40]byte{} {
		return seedOf(b[:]), nil
	}
	s, err := newSeed()
	if err != nil {
		return s, err
	}
	return s, m.Update(uint32(0), s.bytes(), ebpf.UpdateAny)
}
