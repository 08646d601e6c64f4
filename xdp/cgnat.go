package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/unmap-dev/unmap/session/cgnat"
	"golang.org/x/sys/unix"
)

// The relay's CGNAT (bpf/cgnat.h, model session/cgnat): its load-time
// configuration, the maps it sizes, and what the agent does to them:
// grant blocks, say when to refuse, read mappings and block events.

// DefaultCGNATMappings sizes the mapping table (and the filters'
// permissions) when Options.CGNATMappings is 0: 1M mappings, about 46 MB
// allocated at load (see xdp/README.md, CGNAT).
const DefaultCGNATMappings = 1 << 20

// Defaults of the bound on admin-prohibited answers, for the relay as a
// whole: 100 a second, 50 at once.
const (
	DefaultRefuseRate  = 100
	DefaultRefuseBurst = 50
)

// The generated mirrors have the C's sizes (bpf/types.h checks them there).
var (
	_ [0]struct{} = [8 - unsafe.Sizeof(datapathCgKey{})]struct{}{}
	_ [0]struct{} = [20 - unsafe.Sizeof(datapathCgKey6{})]struct{}{}
	_ [0]struct{} = [8 - unsafe.Sizeof(datapathCgOut{})]struct{}{}
	_ [0]struct{} = [8 - unsafe.Sizeof(datapathCgIn{})]struct{}{}
	_ [0]struct{} = [224 - unsafe.Sizeof(datapathCgBlock{})]struct{}{}
	_ [0]struct{} = [24 - unsafe.Sizeof(datapathCgSub{})]struct{}{}
	_ [0]struct{} = [16 - unsafe.Sizeof(datapathCgEvent{})]struct{}{}
)

// configureCGNAT writes opts.CGNAT into a spec: its constants and the
// sizes of its maps (one entry each when there is no CGNAT).
func configureCGNAT(spec *ebpf.CollectionSpec, opts Options) error {
	c := opts.CGNAT
	if err := c.Validate(); err != nil {
		return err
	}
	if !c.Enabled() {
		return nil
	}
	n := cgnatMappings(opts)
	rate, burst := opts.RefuseRate, opts.RefuseBurst
	if rate == 0 {
		rate = DefaultRefuseRate
	}
	if burst == 0 {
		burst = DefaultRefuseBurst
	}
	if rate > 1e9 {
		return fmt.Errorf("cgnat: refusal rate %d a second: at most 1e9", rate)
	}
	tokenNS := uint64(time.Second) / uint64(rate)
	if opts.NoRefuseLimit {
		tokenNS = 0
	}
	var gw uint32
	if c.Gateway.IsValid() {
		b := c.Gateway.As4()
		gw = le32(b[:])
	}
	for name, v := range map[string]any{
		datapathVarCfgCgInNet:         hostU32(c.Inside.Addr()),
		datapathVarCfgCgSubs:          uint32(c.Subscribers()),
		datapathVarCfgCgGw:            gw,
		datapathVarCfgCgPool:          hostU32(c.PoolFirst),
		datapathVarCfgCgPoolN:         uint32(c.PoolAddrs),
		datapathVarCfgCgPortLo:        uint32(c.PortLo),
		datapathVarCfgCgBlkBits:       uint32(c.BlockBits),
		datapathVarCfgCgNblk:          uint32(c.Blocks),
		datapathVarCfgCgFilter:        uint32(c.Filter),
		datapathVarCfgCgWarn:          c.WarnAt(),
		datapathVarCfgCgTabBits:       cgTableBits(n),
		datapathVarCfgCgRefuseNs:      tokenNS,
		datapathVarCfgCgRefuseDepthNs: tokenNS * uint64(burst),
		datapathVarCfgCg6Subs:         uint32(c.Subscribers6()),
		datapathVarCfgCg6Net:          hi64(c.Inside6),
		datapathVarCfgCg6Pfx:          pfx96(c.Prefix()),
		datapathVarCfgCg6Mtu:          uint32(c.LinkMTU6()),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	spec.Maps[datapathMapCgTable].MaxEntries = 1 << cgTableBits(n)
	spec.Maps[datapathMapCgBmeta].MaxEntries = 1 << cgTableBits(n)
	spec.Maps[datapathMapCgMappings].MaxEntries = cgSpillEntries(n)
	// The permissions are a preallocated hash: sized for every mapping
	// it holds that memory whether used or not, so only the dependent
	// filters, which record them, get room (88 bytes a mapping otherwise
	// spent for nothing in the default mode). NAT64's mappings (a hash
	// of n beside NAT44's) record theirs in the same map, under the same
	// pool addresses: room for both.
	if c.Filter != cgnat.EIF {
		perms := n
		if c.NAT64() {
			perms = 2 * n
		}
		spec.Maps[datapathMapCgPerms].MaxEntries = perms
	}
	spec.Maps[datapathMapCgSlots].MaxEntries = uint32(cgnat.Planes * c.PoolPorts())
	spec.Maps[datapathMapCgBlocks].MaxEntries = uint32(c.NumBlocks())
	spec.Maps[datapathMapCgSubs].MaxEntries = uint32(c.AllSubscribers())
	if c.NAT64() {
		spec.Maps[datapathMapCgMappings6].MaxEntries = n
		spec.Maps[datapathMapCgSlots6].MaxEntries = uint32(cgnat.Planes * c.PoolPorts())
	}
	return nil
}

// cgnatMappings is the most mappings opts sizes the CGNAT for.
func cgnatMappings(opts Options) uint32 {
	if opts.CGNATMappings == 0 {
		return DefaultCGNATMappings
	}
	return opts.CGNATMappings
}

// hi64 is a prefix's first 64 bits as a number (0 for none).
func hi64(p netip.Prefix) uint64 {
	if !p.IsValid() {
		return 0
	}
	b := p.Addr().As16()
	return binary.BigEndian.Uint64(b[:8])
}

// pfx96 is a /96's three words as the C holds them (network order).
func pfx96(p netip.Prefix) [3]uint32 {
	b := p.Addr().As16()
	return [3]uint32{le32(b[0:4]), le32(b[4:8]), le32(b[8:12])}
}

// hostU32 is an IPv4 address as a number (host order).
func hostU32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// net32 is an IPv4 address as the C holds it in network order.
func net32(a netip.Addr) uint32 {
	b := a.As4()
	return le32(b[:])
}

func cgAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// hport is a port as the C's network-order field holds it, in host order.
func hport(p uint16) uint16 { return p>>8 | p<<8 }

// errNoCGNAT: the datapath was loaded without Options.CGNAT.
var errNoCGNAT = errors.New("cgnat: not configured")

func (d *Datapath) subIndex(sub netip.Addr) (uint32, error) {
	if !d.cg.Enabled() {
		return 0, errNoCGNAT
	}
	si, ok := d.cg.SubIndex(sub)
	if !ok {
		return 0, fmt.Errorf("cgnat: %v is not a subscriber", sub)
	}
	return si, nil
}

// GrantBlock gives block id (cgnat.Config.BlockID) to subscriber sub,
// behind the blocks it holds: the block is written empty first, then
// published in the subscriber's record. The agent grants a block to one
// subscriber at a time (callers serialize grants).
func (d *Datapath) GrantBlock(sub netip.Addr, id uint32) error {
	return d.updateSub(sub, func(s *datapathCgSub) error {
		if int(id) >= d.cg.NumBlocks() {
			return fmt.Errorf("cgnat: block %d outside the pool's %d", id, d.cg.NumBlocks())
		}
		if s.Nblocks >= cgnat.SubBlocks {
			return fmt.Errorf("cgnat: %v holds %d blocks already", sub, s.Nblocks)
		}
		a, base := d.cg.BlockAt(id)
		if err := d.objs.CgBlocks.Update(id, &datapathCgBlock{Addr: net32(a), Base: base}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("cgnat: block %d: %w", id, err)
		}
		s.Block[s.Nblocks] = id + 1
		s.Nblocks++
		return nil
	})
}

// updateSub rewrites subscriber sub's record in cg_subs with fn; nothing
// is written if fn fails. Whole, not in place: the agent is the record's
// only writer (grants, spent, withdrawals are serialized by it), the
// datapath only reads it.
func (d *Datapath) updateSub(sub netip.Addr, fn func(*datapathCgSub) error) error {
	si, err := d.subIndex(sub)
	if err != nil {
		return err
	}
	var s datapathCgSub
	if err := d.objs.CgSubs.Lookup(si, &s); err != nil {
		return fmt.Errorf("cgnat: subscriber %v: %w", sub, err)
	}
	if err := fn(&s); err != nil {
		return err
	}
	return d.objs.CgSubs.Update(si, &s, ebpf.UpdateAny)
}

// SetSpent says whether sub's new mappings are refused once its blocks
// are full (its quota or the pool is spent) instead of asking the agent.
func (d *Datapath) SetSpent(sub netip.Addr, spent bool) error {
	return d.updateSub(sub, func(s *datapathCgSub) error {
		s.Spent = boolU32(spent)
		return nil
	})
}

// CGNATMappings reads the outbound mappings back.
func (d *Datapath) CGNATMappings() (map[cgnat.Key]cgnat.Out, error) {
	var set CGNATMappingSet
	if err := d.ReadCGNATMappings(&set); err != nil {
		return nil, err
	}
	out := make(map[cgnat.Key]cgnat.Out, set.Len())
	set.Each(func(k cgnat.Key, o cgnat.Out) { out[k] = o })
	return out, nil
}

// CGNATMappingSet is the outbound mappings as one read found them, kept
// in the kernel's layout (16 bytes a NAT44 mapping, 28 a NAT64 one) in
// buffers the next read reuses: the sweep reads every mapping every
// 10 s, and a Go map of a million of them each time cost it more than
// the reading. Not safe for concurrent use.
type CGNATMappingSet struct {
	k4 []datapathCgKey
	v4 []datapathCgOut
	k6 []datapathCgKey6
	v6 []datapathCgOut
}

// Len is the number of mappings the set holds.
func (s *CGNATMappingSet) Len() int { return len(s.k4) + len(s.k6) }

// Each calls fn with every mapping of the set, NAT44's then NAT64's.
func (s *CGNATMappingSet) Each(fn func(cgnat.Key, cgnat.Out)) {
	for i, k := range s.k4 {
		v := s.v4[i]
		fn(cgnat.Key{Addr: cgAddr(k.Addr), Port: hport(k.Port), Proto: k.Proto},
			cgnat.Out{Addr: cgAddr(v.Addr), Port: hport(v.Port), Epoch: v.Epoch})
	}
	for i, k := range s.k6 {
		v := s.v6[i]
		fn(cgnat.Key{Addr: addr6(k.Addr), Port: hport(k.Port), Proto: k.Proto},
			cgnat.Out{Addr: cgAddr(v.Addr), Port: hport(v.Port), Epoch: v.Epoch})
	}
}

// ReadCGNATMappings reads the outbound mappings into s, replacing what
// it held. In batches (BPF_MAP_LOOKUP_BATCH), as CGNATSlots reads the
// slots: one element at a time, get-next-key and lookup, was two
// syscalls a mapping, two million every sweep at 1M mappings.
func (d *Datapath) ReadCGNATMappings(s *CGNATMappingSet) error {
	s.k4, s.v4, s.k6, s.v6 = s.k4[:0], s.v4[:0], s.k6[:0], s.v6[:0]
	if !d.cg.Enabled() {
		return nil
	}
	var err error
	if s.k4, s.v4, err = d.cgt.each(s.k4, s.v4); err != nil || !d.cg.NAT64() {
		return err
	}
	s.k6, s.v6, err = readHash(d.objs.CgMappings6, s.k6, s.v6)
	return err
}

// cgBatch is how many mappings one batch lookup asks for: a few
// thousand make the syscalls few (256 a million) with buffers of tens
// of kB.
const cgBatch = 4096

// readHash appends every element of hash m to keys and vals, in batches.
// A hash batch stops at a bucket's end and fails with ENOSPC when the
// next bucket alone holds more than the room left and nothing was read
// (cilium/ebpf's BatchLookup): the room is then doubled and the same
// bucket read again, the cursor staying on it.
func readHash[K, V any](m *ebpf.Map, keys []K, vals []V) ([]K, []V, error) {
	var cursor ebpf.MapBatchCursor
	room := cgBatch
	for {
		n0 := len(keys)
		keys, vals = slices.Grow(keys, room)[:n0+room], slices.Grow(vals, room)[:n0+room]
		n, err := m.BatchLookup(&cursor, keys[n0:], vals[n0:], nil)
		keys, vals = keys[:n0+n], vals[:n0+n]
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return keys, vals, nil
		case errors.Is(err, unix.ENOSPC) && n == 0 && room < int(m.MaxEntries()):
			room *= 2
		case err != nil:
			return keys, vals, fmt.Errorf("cgnat mappings: %w", err)
		}
	}
}

// addr6 is an IPv6 address from the C's four network-order words.
func addr6(w [4]uint32) netip.Addr {
	var b [16]byte
	for i, v := range w {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return netip.AddrFrom16(b)
}

// key6 is a NAT64 mapping's key as the C holds it.
func key6(k cgnat.Key) datapathCgKey6 {
	b := k.Addr.As16()
	var w [4]uint32
	for i := range w {
		w[i] = le32(b[4*i:])
	}
	return datapathCgKey6{Addr: w, Port: hport(k.Port), Proto: k.Proto}
}

// cgUsed and cgV6 are the C's CG_USED and CG_V6 (bpf/types.h): a slot
// that holds a mapping, and one whose mapping is NAT64's (its address
// word is the subscriber's /64 index, its interface ID in cg_slots6).
// Bit 2 is CG_EXPLICIT (cgExplicit, cgnat_explicit.go).
const (
	cgUsed = 1 << 1
	cgV6   = 1 << 3
)

// CGNATSlots reads the inbound slots that hold a mapping.
func (d *Datapath) CGNATSlots() (map[cgnat.Slot]cgnat.In, error) {
	out := map[cgnat.Slot]cgnat.In{}
	if !d.cg.Enabled() {
		return out, nil
	}
	// In batches: the array has a slot for every pool port and plane,
	// mostly empty, and the sweep reads it every 10 s; one element a
	// syscall pair took 1.6 s for 16 addresses of 4096 ports.
	const batch = 4096
	per := d.cg.PoolPorts()
	keys, vals := make([]uint32, batch), make([]datapathCgIn, batch)
	v6 := map[uint32]uint32{} // NAT64 slots: their /64's index, the address waiting for its interface ID
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.objs.CgSlots.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			v, k := vals[i], int(keys[i])
			if v.Flags&cgUsed == 0 {
				continue
			}
			if v.Flags&cgV6 != 0 {
				v6[keys[i]] = v.Addr
			}
			out[cgnat.Slot{Plane: k / per, Off: k % per}] =
				cgnat.In{Addr: cgAddr(v.Addr), Port: hport(v.Port), TCP: v.Tcp, Explicit: v.Flags&cgExplicit != 0}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("cgnat slots: %w", err)
		}
	}
	if len(v6) == 0 {
		return out, nil
	}
	iids, err := d.slotIIDs(v6)
	if err != nil {
		return nil, err
	}
	for k, idx := range v6 {
		sl := cgnat.Slot{Plane: int(k) / per, Off: int(k) % per}
		in := out[sl]
		if in.Addr, err = d.slotAddr6(k, idx, iids[k]); err != nil {
			return nil, err
		}
		out[sl] = in
	}
	return out, nil
}

// CGNATSlotStates is every inbound slot's state bits as one read found
// them, indexed as the array (plane, then pool port), in a buffer the
// next read reuses: what the sweep asks of a mapping's slot (its TCP
// state, whether it was mapped on request) without the map of every
// used slot CGNATSlots builds, nor its NAT64 addresses. Not safe for
// concurrent use.
type CGNATSlotStates struct {
	in  []datapathCgIn
	per int
}

// ReadCGNATSlotStates reads every slot into s, replacing what it held,
// in batches as CGNATSlots does.
func (d *Datapath) ReadCGNATSlotStates(s *CGNATSlotStates) error {
	s.in, s.per = s.in[:0], d.cg.PoolPorts()
	if !d.cg.Enabled() {
		return nil
	}
	var (
		keys   = make([]uint32, cgBatch)
		cursor ebpf.MapBatchCursor
	)
	for {
		n0 := len(s.in)
		s.in = slices.Grow(s.in, cgBatch)[:n0+cgBatch]
		n, err := d.objs.CgSlots.BatchLookup(&cursor, keys, s.in[n0:], nil)
		s.in = s.in[:n0+n]
		for i := range n {
			// An array's batch comes in key order from the cursor on:
			// element i is slot n0+i (checked, so an index is never
			// another slot's).
			if keys[i] != uint32(n0+i) {
				return fmt.Errorf("cgnat slots: element %d of the batch is slot %d", n0+i, keys[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cgnat slots: %w", err)
		}
	}
}

// State is slot sl's TCP state bits (cgnat.TCPSynOut, ...) and whether
// its mapping was made on request; zero for a slot that holds no mapping
// or is outside the pool, as CGNATSlots' map has no such slot.
func (s *CGNATSlotStates) State(sl cgnat.Slot) (tcp uint8, explicit bool) {
	i := sl.Plane*s.per + sl.Off
	if sl.Off < 0 || sl.Off >= s.per || i < 0 || i >= len(s.in) || s.in[i].Flags&cgUsed == 0 {
		return 0, false
	}
	v := s.in[i]
	return v.Tcp, v.Flags&cgExplicit != 0
}

// CGNATSlotState reads slot sl's state alone, one lookup: its TCP state
// bits and whether its mapping was made on request (zero for a slot
// that holds no mapping), for a sweep that needs few of the slots.
func (d *Datapath) CGNATSlotState(sl cgnat.Slot) (tcp uint8, explicit bool, err error) {
	per := d.cg.PoolPorts()
	if !d.cg.Enabled() {
		return 0, false, errNoCGNAT
	}
	if sl.Off < 0 || sl.Off >= per || sl.Plane < 0 || sl.Plane >= cgnat.Planes {
		return 0, false, fmt.Errorf("cgnat: no slot %+v", sl)
	}
	var v datapathCgIn
	if err := d.objs.CgSlots.Lookup(uint32(sl.Plane*per+sl.Off), &v); err != nil {
		return 0, false, fmt.Errorf("cgnat: slot %+v: %w", sl, err)
	}
	if v.Flags&cgUsed == 0 {
		return 0, false, nil
	}
	return v.Tcp, v.Flags&cgExplicit != 0, nil
}

// CGNATSlotCount is the number of inbound slots (every plane's pool
// ports): what ReadCGNATSlotStates reads.
func (d *Datapath) CGNATSlotCount() int {
	if !d.cg.Enabled() {
		return 0
	}
	return cgnat.Planes * d.cg.PoolPorts()
}

// slotIIDs reads the interface IDs of the NAT64 slots in want (cg_slots6,
// beside cg_slots): one by one when they are few, else the whole array
// in batches as CGNATSlots reads cg_slots (a sweep over many NAT64
// mappings would otherwise pay a syscall each again).
func (d *Datapath) slotIIDs(want map[uint32]uint32) (map[uint32]uint64, error) {
	const few, batch = 64, 4096
	out := make(map[uint32]uint64, len(want))
	if len(want) <= few {
		for k := range want {
			var iid uint64
			if err := d.objs.CgSlots6.Lookup(k, &iid); err != nil {
				return nil, fmt.Errorf("cgnat: slot %d's interface ID: %w", k, err)
			}
			out[k] = iid
		}
		return out, nil
	}
	keys, vals := make([]uint32, batch), make([]uint64, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.objs.CgSlots6.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if _, ok := want[keys[i]]; ok {
				out[keys[i]] = vals[i]
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cgnat slots6: %w", err)
		}
	}
}

// slotAddr6 is the subscriber address of NAT64 slot k: the /64 of
// index idx and the interface ID beside the slot.
func (d *Datapath) slotAddr6(k, idx uint32, iid uint64) (netip.Addr, error) {
	sub, ok := d.cg.SubAt(uint32(d.cg.Subscribers()) + idx)
	if !ok || !d.cg.NAT64() {
		return netip.Addr{}, fmt.Errorf("cgnat: slot %d holds /64 %d, no subscriber", k, idx)
	}
	b := sub.As16()
	binary.LittleEndian.PutUint64(b[8:], iid)
	return netip.AddrFrom16(b), nil
}

// SetCGNATEpoch sets the sweep epoch outbound packets stamp on their
// mapping (cgnat.Out.Epoch): the agent advances it every sweep, from the
// clock, and a mapping whose epoch stayed behind by its timeout is idle.
func (d *Datapath) SetCGNATEpoch(e uint16) error {
	return d.objs.SwCgEpoch.Set(uint32(e))
}

// CGNATEvents opens a reader on the block events. Close it when done.
func (d *Datapath) CGNATEvents() (*CGNATEventReader, error) {
	r, err := ringbuf.NewReader(d.objs.CgEvents)
	if err != nil {
		return nil, err
	}
	return &CGNATEventReader{r: r, c: d.cg}, nil
}

// CGNATEventReader reads block events (struct cg_event).
type CGNATEventReader struct {
	r *ringbuf.Reader
	c cgnat.Config // the subscribers' records, to name them
}

// SetDeadline bounds the next Read.
func (e *CGNATEventReader) SetDeadline(t time.Time) { e.r.SetDeadline(t) }

// Read waits for the next event.
func (e *CGNATEventReader) Read() (cgnat.Event, error) {
	rec, err := e.r.Read()
	if err != nil {
		return cgnat.Event{}, err
	}
	b := rec.RawSample
	if len(b) < 16 {
		return cgnat.Event{}, fmt.Errorf("cgnat event of %d bytes", len(b))
	}
	sub, ok := e.c.SubAt(binary.LittleEndian.Uint32(b[0:]))
	if !ok {
		return cgnat.Event{}, fmt.Errorf("cgnat event about subscriber record %d, past the last", binary.LittleEndian.Uint32(b[0:]))
	}
	return cgnat.Event{
		Sub:   sub,
		Block: binary.LittleEndian.Uint32(b[4:]),
		Used:  binary.LittleEndian.Uint32(b[8:]),
		Plane: int(b[13]),
	}, nil
}

// Close stops the reader.
func (e *CGNATEventReader) Close() error { return e.r.Close() }

// Offsets in struct cg_block (bpf/types.h), which the agent changes
// through the shared mapping; each must be the generated mirror's, or
// this fails to compile.
const (
	cgBlockLen  = 224
	cgBitsOff   = 0
	cgUsedOff   = 192
	cgBlockWord = 8 // bitmap words a protocol
)

var (
	_ [0]struct{} = [cgBlockLen - unsafe.Sizeof(datapathCgBlock{})]struct{}{}
	_ [0]struct{} = [cgUsedOff - unsafe.Offsetof(datapathCgBlock{}.Used)]struct{}{}
	_ [0]struct{} = [cgBitsOff - unsafe.Offsetof(datapathCgBlock{}.Bits)]struct{}{}
)

// openBlocks maps cg_blocks, where the agent gives ports back, and the
// mapping table (cgtable.go), hashed with the seed ts holds.
func (d *Datapath) openBlocks(ts tableSpec) error {
	if !d.cg.Enabled() {
		return nil
	}
	t, err := openCGTable(d.objs.CgTable, d.objs.CgBmeta, d.objs.CgMappings,
		cgTableBits(ts.cgMappings), ts.seed)
	if err != nil {
		return err
	}
	mem, err := mmapArray(d.objs.CgBlocks, d.cg.NumBlocks()*cgBlockLen)
	if err != nil {
		return errors.Join(fmt.Errorf("map the cgnat blocks: %w", err), t.close())
	}
	d.cgt, d.cgBlocks = t, mem
	return nil
}

func (d *Datapath) closeBlocks() error {
	if d.cgBlocks == nil {
		return nil
	}
	err := unix.Munmap(d.cgBlocks)
	d.cgBlocks = nil
	return err
}

// ReleaseMapping ends mapping k (the agent's expiry): the outbound
// mapping goes first (no packet leaves on it after), then its inbound
// slot, then its port goes back to its block: its bit cleared and the
// block's count lowered, both with atomics, since the datapath may be
// taking other ports of the block at the same time.
func (d *Datapath) ReleaseMapping(k cgnat.Key) error {
	if !d.cg.Enabled() || d.cgBlocks == nil {
		return errNoCGNAT
	}
	pl := cgnat.Plane(k.Proto)
	if pl < 0 || !k.Addr.Is4() && !d.cg.NAT64() {
		return fmt.Errorf("cgnat: no mapping has key %+v", k)
	}
	var o datapathCgOut
	if k.Addr.Is6() {
		ck := key6(k)
		if err := d.objs.CgMappings6.LookupAndDelete(&ck, &o); err != nil {
			return fmt.Errorf("cgnat: mapping %+v: %w", k, err)
		}
	} else {
		var err error
		if o, err = d.cgt.remove(datapathCgKey{Addr: net32(k.Addr), Port: hport(k.Port), Proto: k.Proto}); err != nil {
			return err
		}
	}
	off, ok := d.cg.PoolPort(cgAddr(o.Addr), hport(o.Port))
	if !ok {
		return fmt.Errorf("cgnat: mapping %+v holds %v:%d, outside the pool", k, cgAddr(o.Addr), hport(o.Port))
	}
	slot := uint32(pl*d.cg.PoolPorts() + off)
	if err := d.objs.CgSlots.Update(slot, &datapathCgIn{}, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("cgnat: slot of %+v: %w", k, err)
	}
	id, pos := off>>d.cg.BlockBits, off&(d.cg.BlockSize()-1)
	b := d.cgBlocks[id*cgBlockLen:]
	word := (*uint64)(unsafe.Pointer(&b[cgBitsOff+8*(pl*cgBlockWord+pos/64)]))
	atomic.AndUint64(word, ^(uint64(1) << (pos % 64)))
	atomic.AddUint32((*uint32)(unsafe.Pointer(&b[cgUsedOff+4*pl])), ^uint32(0))
	return nil
}

// GrantDeterministic writes deterministic mode (cgnat.Deterministic)
// into the datapath: every subscriber's computed blocks, each subscriber
// spent (past its blocks it is refused, never sent to the agent).
// Subscribers that already hold blocks (a pinned datapath) are left as
// they are.
func (d *Datapath) GrantDeterministic(m cgnat.Deterministic) error {
	if err := m.Validate(); err != nil {
		return err
	}
	c := m.Config
	for i := range c.Subscribers() {
		sub := hostAddr(hostU32(c.Inside.Addr()) + uint32(i))
		var s datapathCgSub
		if err := d.objs.CgSubs.Lookup(uint32(i), &s); err != nil {
			return fmt.Errorf("cgnat: subscriber %v: %w", sub, err)
		}
		if s.Nblocks > 0 {
			continue
		}
		ids, err := m.Blocks(sub)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := d.GrantBlock(sub, id); err != nil {
				return err
			}
		}
		if err := d.SetSpent(sub, true); err != nil {
			return err
		}
	}
	return nil
}

// hostAddr is an IPv4 address from a number (host order).
func hostAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// CGNATGrant is a subscriber's record in the datapath: the blocks it
// holds, in the order tried, and whether its new flows are refused once
// they are full.
type CGNATGrant struct {
	Blocks []uint32
	Spent  bool
}

// CGNATGrants reads back every subscriber record that holds a block or
// is spent: what a restarted agent restores its book of blocks from.
func (d *Datapath) CGNATGrants() (map[netip.Addr]CGNATGrant, error) {
	out := map[netip.Addr]CGNATGrant{}
	if !d.cg.Enabled() {
		return out, nil
	}
	var (
		k uint32
		v datapathCgSub
	)
	it := d.objs.CgSubs.Iterate()
	for it.Next(&k, &v) {
		if v.Nblocks == 0 && v.Spent == 0 {
			continue
		}
		g := CGNATGrant{Spent: v.Spent != 0}
		for i := range min(v.Nblocks, cgnat.SubBlocks) {
			g.Blocks = append(g.Blocks, v.Block[i]-1)
		}
		sub, ok := d.cg.SubAt(k)
		if !ok {
			return out, fmt.Errorf("cgnat: subscriber record %d past the last", k)
		}
		out[sub] = g
	}
	return out, it.Err()
}

// CGNATBlockUsed is the ports block id has taken, per protocol plane
// (TCP, UDP, ICMP echo), read through the shared mapping of cg_blocks.
func (d *Datapath) CGNATBlockUsed(id uint32) ([cgnat.Planes]uint32, error) {
	var used [cgnat.Planes]uint32
	if !d.cg.Enabled() || d.cgBlocks == nil {
		return used, errNoCGNAT
	}
	if int(id) >= d.cg.NumBlocks() {
		return used, fmt.Errorf("cgnat: block %d outside the pool's %d", id, d.cg.NumBlocks())
	}
	b := d.cgBlocks[int(id)*cgBlockLen:]
	for pl := range used {
		used[pl] = atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[cgUsedOff+4*pl])))
	}
	return used, nil
}

// WithdrawBlock takes block id out of sub's record, so the datapath takes
// no new port from it. A CPU that read the record just before may still
// take one: the caller gives the block back to the pool only once
// CGNATBlockUsed reads it empty after this (and a packet's time).
func (d *Datapath) WithdrawBlock(sub netip.Addr, id uint32) error {
	return d.updateSub(sub, func(s *datapathCgSub) error {
		kept := datapathCgSub{Spent: s.Spent}
		for i := range min(s.Nblocks, cgnat.SubBlocks) {
			if s.Block[i] != id+1 {
				kept.Block[kept.Nblocks] = s.Block[i]
				kept.Nblocks++
			}
		}
		if kept.Nblocks == s.Nblocks {
			return fmt.Errorf("cgnat: %v does not hold block %d", sub, id)
		}
		*s = kept
		return nil
	})
}

func ptr[T any](v T) *T { return &v }
