package xdp

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
)

// Datapath is one loaded copy of the unmap programs and their maps.
type Datapath struct {
	objs datapathObjects
	cfg  xlat.Config
	cg   cgnat.Config // the relay's CGNAT, if any (cgnat.go)
	// cgBlocks is cg_blocks mapped, where ports go back (cgnat.go).
	cgBlocks []byte
	cgt      *cgTable // cg_table mapped, the NAT44 mappings (cgtable.go)
	tab      *flowTable
	mu       sync.Mutex // serializes writes of carrier slots and the flow table
	nh       nextHops   // the next-hop cache's generation and counters (nexthop.go)
}

// Options tune loading; the zero value is fine.
type Options struct {
	// Buckets sizes the flow table (four keys each, both directions of
	// a flow count, carriers in their slots do not): a power of two up
	// to 2^24; 0 is DefaultBuckets.
	Buckets uint32
	// MaxFlows sizes each of the spill hashes, IPv6 and IPv4, where keys
	// go whose bucket is full; 0 keeps the object's default of 65536.
	MaxFlows uint32
	// PinPath, if set, is a bpffs folder where the maps are pinned, or
	// reused from the last load (see pin.go).
	PinPath string
	// MissRate and MissBurst bound the misses one source hands to the
	// agent (an IPv4 address, or an IPv6 /64; see bpf/miss.h): a token
	// bucket of MissBurst packets refilled at MissRate a second, at most
	// 1e9. A miss over it is dropped as drop-miss-rate. 0 is
	// DefaultMissRate, DefaultMissBurst.
	MissRate, MissBurst uint32
	// NoMissLimit lifts that bound: for tests that compare the programs
	// with the reference model, which has no clock.
	NoMissLimit bool
	// CGNAT configures the relay's CGNAT for its subscribers (relay_sub,
	// and the pool's ports on relay_ext); the zero value is none.
	CGNAT cgnat.Config
	// CGNATMappings sizes the CGNAT's mapping table (room for twice as
	// many, cgtable.go), its spill and the filters'
	// permissions; 0 is DefaultCGNATMappings.
	CGNATMappings uint32
	// RefuseRate and RefuseBurst bound the CGNAT's admin-prohibited
	// answers, for the relay as a whole; 0 is DefaultRefuseRate,
	// DefaultRefuseBurst. NoRefuseLimit lifts the bound (the model has no
	// clock).
	RefuseRate, RefuseBurst uint32
	NoRefuseLimit           bool
	// NoNextHopCache makes every IPv4 packet forwarded take the real FIB
	// lookup (bpf/nhcache.h): for comparisons of the cache's cost.
	NoNextHopCache bool
}

// Load validates cfg, writes it into the programs' load-time constants and
// loads them into the kernel. A verifier rejection is returned as an
// *ebpf.VerifierError with the log.
func Load(cfg xlat.Config, opts Options) (*Datapath, error) {
	spec, err := loadDatapath()
	if err != nil {
		return nil, err
	}
	return loadSpec(spec, cfg, opts)
}

// loadSpec is Load of a spec of the datapath (tests change one to stand
// for another build's).
func loadSpec(spec *ebpf.CollectionSpec, cfg xlat.Config, opts Options) (*Datapath, error) {
	var copts *ebpf.CollectionOptions
	var seed *tableSeed
	if opts.PinPath != "" {
		// The hash of a pinned table is the one it was filled with.
		s, err := pinnedSeed(opts.PinPath)
		if err != nil {
			return nil, err
		}
		seed = &s
	}
	ts, err := configure(spec, cfg, opts, seed)
	if err != nil {
		return nil, err
	}
	record := func() error { return nil }
	if opts.PinPath != "" {
		// After configure: the layout covers the configured sizes.
		if record, err = pinSpec(spec, opts.PinPath); err != nil {
			return nil, err
		}
		copts = &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: opts.PinPath}}
	}
	d := &Datapath{cfg: cfg, cg: opts.CGNAT}
	if err := spec.LoadAndAssign(&d.objs, copts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, incompatible(opts.PinPath, err)
		}
		return nil, fmt.Errorf("load datapath: %w", err)
	}
	if err := d.openTable(ts); err != nil {
		return nil, errors.Join(err, d.objs.Close())
	}
	if err := d.openBlocks(ts); err != nil {
		return nil, errors.Join(err, d.tab.close(), d.objs.Close())
	}
	// Once this build's maps are pinned: a load that failed before left
	// the record saying what the pins are.
	if err := record(); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// tableSpec is the flow table a spec was configured with.
type tableSpec struct {
	buckets    uint32
	seed       tableSeed
	cgMappings uint32 // the CGNAT's most mappings, which size cg_table
}

// configure validates cfg and writes it, and the table sizes and hash
// seed (a new one if seed is nil) it implies, into a spec of the
// datapath (or of a test build of the same C).
func configure(spec *ebpf.CollectionSpec, cfg xlat.Config, opts Options, seed *tableSeed) (tableSpec, error) {
	ts := tableSpec{buckets: opts.Buckets}
	if ts.buckets == 0 {
		ts.buckets = DefaultBuckets
	}
	if err := cfg.Validate(); err != nil {
		return ts, err
	}
	if err := checkBuckets(ts.buckets); err != nil {
		return ts, err
	}
	if seed != nil {
		ts.seed = *seed
	} else {
		var err error
		if ts.seed, err = newSeed(); err != nil {
			return ts, err
		}
	}
	tokenNS, depthNS, err := missLimit(opts)
	if err != nil {
		return ts, err
	}
	nhTTL, err := nhTTL(opts)
	if err != nil {
		return ts, err
	}
	var addr uint32
	if cfg.CarrierAddr.IsValid() {
		b := cfg.CarrierAddr.As4()
		addr = le32(b[:])
	}
	for name, v := range map[string]any{
		datapathVarCfgCarrierAddr: addr,
		datapathVarCfgPortLo:      cfg.PortLo,
		datapathVarCfgPortHi:      cfg.PortHi,
		datapathVarSwLanV4:        boolU32(cfg.LANv4ToAgent),
		datapathVarCfgSeed:        [5]uint64(ts.seed),
		datapathVarCfgBucketBits:  uint32(bits.TrailingZeros32(ts.buckets)),
		datapathVarCfgMissNs:      tokenNS,
		datapathVarCfgMissDepthNs: depthNS,
		datapathVarCfgNhTtl:       nhTTL,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return ts, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := configureCGNAT(spec, opts); err != nil {
		return ts, err
	}
	ts.cgMappings = cgnatMappings(opts)
	spec.Maps[datapathMapCarriers].MaxEntries = slotCount(cfg)
	spec.Maps[datapathMapFlowtab].MaxEntries = ts.buckets
	if opts.MaxFlows != 0 {
		spec.Maps[datapathMapFlows].MaxEntries = opts.MaxFlows
		spec.Maps[datapathMapFlows4].MaxEntries = opts.MaxFlows
	}
	return ts, nil
}

// openTable maps the loaded flow table and counts, per bucket, the keys a
// pinned table's last user left in the spill hashes.
func (d *Datapath) openTable(ts tableSpec) error {
	t, err := openTable(d.objs.Flowtab, ts.buckets, ts.seed)
	if err != nil {
		return err
	}
	d.tab = t
	var (
		k    datapathFlowKey
		k4   datapathFlowKey4
		vals []datapathFlowEntry
		n    = map[uint32]int{}
	)
	count := func(ck datapathFlowKey) {
		kb := keyBytes(ck)
		if k, err := decodeKey(kb); err == nil {
			if _, ok := d.slotIndex(k); ok {
				return // a spilled carrier: its slot says so
			}
		}
		n[t.bucket(kb)]++
	}
	it := d.objs.Flows.Iterate()
	for it.Next(&k, &vals) {
		count(k)
	}
	it4 := d.objs.Flows4.Iterate()
	for it4.Next(&k4, &vals) {
		count(key4(k4))
	}
	if err := errors.Join(it.Err(), it4.Err()); err != nil {
		return fmt.Errorf("spill hashes: %w", err)
	}
	for b, c := range n {
		t.setSpill(b, c)
	}
	return nil
}

// Close releases the programs and maps (attached links stay until closed).
func (d *Datapath) Close() error {
	return errors.Join(d.tab.close(), d.closeBlocks(), d.cgt.close(), d.objs.Close())
}

// Program returns the entry program for a role.
func (d *Datapath) Program(r xlat.Role) *ebpf.Program {
	switch r {
	case xlat.RoleEdgeLAN:
		return d.objs.EdgeLan
	case xlat.RoleEdgeWAN:
		return d.objs.EdgeWan
	case xlat.RoleRelayExt:
		return d.objs.RelayExt
	case xlat.RoleRelaySub:
		return d.objs.RelaySub
	}
	return nil
}

// SetFIB switches FIB forwarding on (the default) or off; off passes
// translated packets to the stack, the mode differential tests use.
func (d *Datapath) SetFIB(on bool) error {
	return d.objs.SwFib.Set(boolU32(on))
}

// SetLANv4ToAgent switches where the edge LAN's IPv4 misses go: to the
// agent (on: the site's IPv4 rides carriers to its public address on the
// relay) or to the stack (off: the ordinary path). Load starts from
// Config.LANv4ToAgent.
func (d *Datapath) SetLANv4ToAgent(on bool) error {
	d.cfg.LANv4ToAgent = on
	return d.objs.SwLanV4.Set(boolU32(on))
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Put installs or replaces the entry for k on every CPU, with zero
// counters.
func (d *Datapath) Put(k xlat.Key, e xlat.Entry) error {
	return d.put(k, e, ebpf.UpdateAny)
}

func (d *Datapath) put(k xlat.Key, e xlat.Entry, flags ebpf.MapUpdateFlags) error {
	ck, err := cKey(k)
	if err != nil {
		return err
	}
	ce, err := cEntry(e)
	if err != nil {
		return err
	}
	if idx, ok := d.slotIndex(k); ok {
		return d.putSlot(idx, ck, ce, flags)
	}
	return d.putTable(ck, ce, flags)
}

func (d *Datapath) putFlows(ck datapathFlowKey, ce datapathFlowEntry, flags ebpf.MapUpdateFlags) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	vals := make([]datapathFlowEntry, n)
	for i := range vals {
		vals[i] = ce
	}
	m, hk := d.hash(ck)
	return m.Update(hk, vals, flags)
}

// Mapping is one direction of a flow: the key a packet arrives with and
// what it becomes.
type Mapping struct {
	Key   xlat.Key
	Entry xlat.Entry
}

// PutPair installs both directions of a new flow, the return direction
// first so no packet is translated one way without a way back; if the
// second insert fails the first is rolled back. Either key existing is
// an error (ebpf.ErrKeyExist).
func (d *Datapath) PutPair(out, back Mapping) error {
	if err := d.put(back.Key, back.Entry, ebpf.UpdateNoExist); err != nil {
		return fmt.Errorf("return direction: %w", err)
	}
	if err := d.put(out.Key, out.Entry, ebpf.UpdateNoExist); err != nil {
		return errors.Join(fmt.Errorf("forward direction: %w", err), d.Delete(back.Key))
	}
	return nil
}

// DeletePair removes both directions of a flow, forward first so no
// packet is translated one way once the way back is gone.
func (d *Datapath) DeletePair(out, back Mapping) error {
	return errors.Join(d.Delete(out.Key), d.Delete(back.Key))
}

// Delete removes the entry for k.
func (d *Datapath) Delete(k xlat.Key) error {
	ck, err := cKey(k)
	if err != nil {
		return err
	}
	if idx, ok := d.slotIndex(k); ok {
		return d.deleteSlot(idx, ck)
	}
	return d.deleteTable(ck)
}

// Counters are a flow direction's translated packets and bytes (input
// frame bytes), summed over CPUs.
type Counters struct {
	Packets, Bytes uint64
	Ended          uint16 // xlat.EndFIN, EndRST: what the entry's TCP segments carried
}

// FlowCounters reads k's counters.
func (d *Datapath) FlowCounters(k xlat.Key) (Counters, error) {
	ck, err := cKey(k)
	if err != nil {
		return Counters{}, err
	}
	if idx, ok := d.slotIndex(k); ok {
		return d.slotCounters(idx, ck)
	}
	return d.tableCounters(ck)
}

func (d *Datapath) flowsCounters(ck datapathFlowKey) (Counters, error) {
	var vals []datapathFlowEntry
	m, hk := d.hash(ck)
	if err := m.Lookup(hk, &vals); err != nil {
		return Counters{}, err
	}
	var c Counters
	for _, v := range vals {
		c.Packets += v.Packets
		c.Bytes += v.Bytes
		c.Ended |= v.Flags
	}
	return c, nil
}

// Reasons reads the pass/drop counters, summed over CPUs, indexed by
// xlat.Reason.
func (d *Datapath) Reasons() ([xlat.NumReasons]uint64, error) {
	var out [xlat.NumReasons]uint64
	for r := range out {
		var per []uint64
		if err := d.objs.Reasons.Lookup(uint32(r), &per); err != nil {
			return out, fmt.Errorf("reason %v: %w", xlat.Reason(r), err)
		}
		for _, n := range per {
			out[r] += n
		}
	}
	return out, nil
}

// AddLocal marks a as one of the router's own addresses (the edge LAN
// program passes misses to it to the stack; the relay's refuses it as a
// source of what it hands to the agent).
func (d *Datapath) AddLocal(a netip.Addr) error {
	k := mapped(a)
	return d.objs.LocalAddrs.Update(&k, uint8(1), ebpf.UpdateAny)
}

// SetLocal makes as the router's own addresses (see AddLocal): addresses
// a pinned map kept from an earlier configuration go. At the relay, its
// carrier addresses: the program refuses them as sources of what it hands
// to the agent (bpf/martian.h).
func (d *Datapath) SetLocal(as []netip.Addr) error {
	want := map[[4]uint32]bool{}
	for _, a := range as {
		want[mapped(a)] = true
	}
	var (
		k     [4]uint32
		v     uint8
		stale [][4]uint32
	)
	it := d.objs.LocalAddrs.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("local addresses: %w", err)
	}
	for _, k := range stale {
		if err := d.objs.LocalAddrs.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("local addresses: %w", err)
		}
	}
	for _, a := range as {
		if err := d.AddLocal(a); err != nil {
			return fmt.Errorf("local address %v: %w", a, err)
		}
	}
	return nil
}

// AddSitePrefix adds a site's prefix (or public IPv4): at the relay,
// misses to it go to the agent; at the edge LAN, they pass (the site's
// other segments).
func (d *Datapath) AddSitePrefix(p netip.Prefix) error {
	k := lpmKeyOf(p)
	return d.objs.SitePrefixes.Update(&k, uint8(1), ebpf.UpdateAny)
}

// SetSitePrefixes makes ps the sites' prefixes (see AddSitePrefix):
// prefixes a pinned map kept from an earlier configuration go.
func (d *Datapath) SetSitePrefixes(ps []netip.Prefix) error {
	want := map[datapathLpmKey]bool{}
	for _, p := range ps {
		want[lpmKeyOf(p)] = true
	}
	var (
		k     datapathLpmKey
		v     uint8
		stale []datapathLpmKey
	)
	it := d.objs.SitePrefixes.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("site prefixes: %w", err)
	}
	for _, k := range stale {
		if err := d.objs.SitePrefixes.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("site prefixes: %w", err)
		}
	}
	for _, p := range ps {
		if err := d.AddSitePrefix(p); err != nil {
			return fmt.Errorf("site prefix %v: %w", p, err)
		}
	}
	return nil
}

// lpmKeyOf is p as site_prefixes holds it.
func lpmKeyOf(p netip.Prefix) datapathLpmKey {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return datapathLpmKey{Prefixlen: uint32(bits), Addr: mapped(p.Masked().Addr())}
}

// AddTXPort allows XDP_REDIRECT to the interface (it needs XDP support on
// its receive side, e.g. an XDP program on a veth peer).
func (d *Datapath) AddTXPort(ifindex int) error {
	return d.objs.TxPorts.Update(uint32(ifindex), uint32(ifindex), ebpf.UpdateAny)
}

// Mode is how a program got attached.
type Mode string

const (
	ModeNative  Mode = "native"
	ModeGeneric Mode = "generic"
)

// Attach attaches the role's program to an interface in native (driver)
// mode, falling back to generic mode, and reports which it got.
func (d *Datapath) Attach(ifindex int, r xlat.Role) (link.Link, Mode, error) {
	prog := d.Program(r)
	if prog == nil {
		return nil, "", fmt.Errorf("no program for role %v", r)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err == nil {
		return l, ModeNative, nil
	}
	l, gerr := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
	if gerr != nil {
		return nil, "", fmt.Errorf("attach %v to ifindex %d: native: %v; generic: %w", r, ifindex, err, gerr)
	}
	return l, ModeGeneric, nil
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// hash is the spill hash a key lives in when its slot or bucket has no
// room, and its key there: IPv4 keys in flows4 (16 bytes), IPv6 keys in
// flows (40).
func (d *Datapath) hash(ck datapathFlowKey) (*ebpf.Map, any) {
	if ck.Family == 4 {
		return d.objs.Flows4, &datapathFlowKey4{Proto: ck.Proto, Sport: ck.Sport, Dport: ck.Dport, Saddr: ck.Saddr[0], Daddr: ck.Daddr[0]}
	}
	return d.objs.Flows, &ck
}

func (d *Datapath) deleteFlows(ck datapathFlowKey) error {
	m, hk := d.hash(ck)
	return m.Delete(hk)
}

// fromCollection makes a Datapath of a loaded test build of the same C,
// configured by configure with ts.
func fromCollection(coll *ebpf.Collection, cfg xlat.Config, cg cgnat.Config, ts tableSpec) (*Datapath, error) {
	d := &Datapath{cfg: cfg, cg: cg}
	if err := coll.Assign(&d.objs); err != nil {
		return nil, err
	}
	if err := d.openTable(ts); err != nil {
		return nil, errors.Join(err, d.objs.Close())
	}
	if err := d.openBlocks(ts); err != nil {
		return nil, errors.Join(err, d.tab.close(), d.objs.Close())
	}
	return d, nil
}
