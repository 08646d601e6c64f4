package cgnat

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/xdp"
)

// Datapath is what the agent needs of the loaded datapath
// (*xdp.Datapath; a fake in the tests).
type Datapath interface {
	GrantBlock(sub netip.Addr, id uint32) error
	WithdrawBlock(sub netip.Addr, id uint32) error
	SetSpent(sub netip.Addr, spent bool) error
	GrantDeterministic(m cgnat.Deterministic) error
	CGNATGrants() (map[netip.Addr]xdp.CGNATGrant, error)
	CGNATBlockUsed(id uint32) ([cgnat.Planes]uint32, error)
	CGNATMappings() (map[cgnat.Key]cgnat.Out, error)
	CGNATSlots() (map[cgnat.Slot]cgnat.In, error)
	SetCGNATEpoch(e uint16) error
	ReleaseMapping(k cgnat.Key) error
}

// EpochLength is the sweep epoch's length: a mapping's idle time is
// known to within it. The epoch is the clock's seconds over it, so a
// restarted agent goes on with the same numbers against pinned mappings.
const EpochLength = 10 * time.Second

// Epoch is the sweep epoch at t.
func Epoch(t time.Time) uint16 { return uint16(t.Unix() / int64(EpochLength/time.Second)) }

// Agent grants and takes back the subscribers' blocks, expires idle
// mappings and logs every grant and release. Its methods are safe for
// concurrent use (one lock: grants are rare, a few per subscriber).
type Agent struct {
	s    *Settings
	dp   Datapath
	blog RecordLog // nil in deterministic mode
	log  *slog.Logger
	now  func() time.Time
	// M is the agent's counters (metrics.go); mappings the datapath's
	// mappings by plane at the last sweep, mappings64 the NAT64 ones
	// among them.
	M          *metrics.Counters
	mappings   [cgnat.Planes]atomic.Int64
	mappings64 [cgnat.Planes]atomic.Int64

	// sweepMu serializes sweeps over set and slots, the buffers each
	// sweep reads the mappings and slots into and the next reuses
	// (readMappings, readSlots).
	sweepMu sync.Mutex
	set     xdp.CGNATMappingSet
	slots   xdp.CGNATSlotStates

	mu        sync.Mutex
	pool      *cgnat.Pool
	spent     map[netip.Addr]bool
	emptyAt   map[uint32]time.Time  // held block -> when first read empty
	withdrawn map[uint32]netip.Addr // out of its subscriber's record, not yet returned
}

// NewAgent starts the agent's book from what the (possibly pinned)
// datapath holds, so no block granted before a restart is granted again,
// and in deterministic mode writes every subscriber's blocks once. blog
// may be nil only in deterministic mode; now nil is time.Now.
func NewAgent(s *Settings, dp Datapath, blog RecordLog, log *slog.Logger, now func() time.Time) (*Agent, error) {
	if now == nil {
		now = time.Now
	}
	a := &Agent{s: s, dp: dp, blog: blog, log: log, now: now, M: cgnatMetrics.New(), spent: map[netip.Addr]bool{},
		emptyAt: map[uint32]time.Time{}, withdrawn: map[uint32]netip.Addr{}}
	if s.Deterministic {
		return a, dp.GrantDeterministic(cgnat.Deterministic{Config: &s.Datapath, Quota: s.Quota})
	}
	if blog == nil {
		return nil, errors.New("cgnat: dynamic mode needs the block log")
	}
	var err error
	if a.pool, err = cgnat.NewPool(&s.Datapath, s.Quota, s.Grace, now); err != nil {
		return nil, err
	}
	grants, err := dp.CGNATGrants()
	if err != nil {
		return nil, err
	}
	for sub, g := range grants {
		if err := a.pool.Restore(sub, g.Blocks); err != nil {
			return nil, err
		}
		if g.Spent {
			a.spent[sub] = true
		}
	}
	if err := dp.SetCGNATEpoch(Epoch(now())); err != nil {
		return nil, err
	}
	return a, nil
}

// NoBlock handles a subscriber's new flow that found no free port in its
// blocks (the miss ring's cgnat-no-block; a subscriber's first packet
// too): it grants the next block, or marks the subscriber spent so its
// next new flows are refused at once.
func (a *Agent) NoBlock(sub netip.Addr) error {
	if a.s.Deterministic {
		return nil // every subscriber is spent: it never asks
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.spent[sub] {
		return nil // a packet that raced the flag
	}
	return a.grant(sub, true)
}

// NoPort is NoBlock for a packet of protocol proto, which the agent
// then sends through the datapath again: nothing is granted if a block
// sub holds in the datapath has a free port in that protocol (the packet
// found none just before a grant to an earlier packet of the same burst
// was written), so a burst of first packets costs one block, not one
// each.
func (a *Agent) NoPort(sub netip.Addr, proto uint8) error {
	if a.s.Deterministic {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.spent[sub] {
		return nil // a packet that raced the flag: the datapath refuses it now
	}
	if pl := cgnat.Plane(proto); pl >= 0 {
		for _, id := range a.pool.Held(sub) {
			if _, out := a.withdrawn[id]; out {
				continue
			}
			if used, err := a.dp.CGNATBlockUsed(id); err == nil && int(used[pl]) < a.s.Datapath.BlockSize() {
				return nil
			}
		}
	}
	return a.grant(sub, true)
}

// Event handles a block that reached its warn level: the subscriber's
// next block is granted before this one is full. Only an event about the
// last block granted asks for one (the same block warns once a protocol).
func (a *Agent) Event(ev cgnat.Event) error {
	if a.s.Deterministic {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.pool.Held(ev.Sub)
	if len(h) == 0 || h[len(h)-1] != ev.Block {
		return nil
	}
	return a.grant(ev.Sub, false)
}

// grant gives sub a block: logged (and synced) first, then written to
// the datapath. full says the subscriber's blocks have no free port: at
// its quota, or with the pool spent, it is then refused until a block or
// port comes back.
func (a *Agent) grant(sub netip.Addr, full bool) error {
	id, err := a.pool.Grant(sub)
	if errors.Is(err, cgnat.ErrQuota) || errors.Is(err, cgnat.ErrPoolEmpty) {
		if !full {
			return nil
		}
		if errors.Is(err, cgnat.ErrQuota) {
			a.M.Inc(mRefusedQuota)
		} else {
			a.M.Inc(mRefusedPool)
		}
		a.spent[sub] = true
		return a.dp.SetSpent(sub, true)
	}
	if err != nil {
		return err
	}
	if err := a.record(EventGrant, sub, id); err != nil {
		// Unlogged, not granted: the block goes back at once.
		return errors.Join(err, a.pool.Return(sub, id))
	}
	if err := a.dp.GrantBlock(sub, id); err != nil {
		return err
	}
	a.M.Inc(mGranted)
	if a.spent[sub] {
		delete(a.spent, sub)
		return a.dp.SetSpent(sub, false)
	}
	return nil
}

func (a *Agent) record(event string, sub netip.Addr, id uint32) error {
	addr, first := a.s.Datapath.BlockAt(id)
	err := a.blog.Write(Record{Time: a.now().UTC(), Event: event, Subscriber: sub, Address: addr,
		PortFirst: first, PortLast: first + uint16(a.s.Datapath.BlockSize()-1), Protocol: BlockProtocols})
	if err != nil {
		a.M.Inc(mLogFailed)
		return err
	}
	a.M.Inc(mLogWritten)
	return nil
}

// Sweep advances the epoch, ends the mappings idle past their timeout,
// and takes back blocks empty for the grace time: first out of their
// subscriber's record, then, empty still at the next sweep, back to the
// pool with a release record.
func (a *Agent) Sweep() error {
	now := a.now()
	epoch := Epoch(now)
	if err := a.dp.SetCGNATEpoch(epoch); err != nil {
		return err
	}
	a.sweepMu.Lock()
	defer a.sweepMu.Unlock()
	each, err := a.readMappings()
	if err != nil {
		return err
	}
	// Only a mapping idle past the least timeout of its protocol can
	// end, and only its slot's state (TCP bits, on request) can keep it:
	// counted first, so a sweep with few of them reads just their slots,
	// not the whole array (three slots a pool port).
	within := func(k cgnat.Key, idle time.Duration) bool { return idle <= a.leastTimeout(k.Proto) }
	need := 0
	each(func(k cgnat.Key, o cgnat.Out) {
		if !within(k, time.Duration(uint16(epoch-o.Epoch))*EpochLength) {
			need++
		}
	})
	slots, err := a.readSlots(need)
	if err != nil {
		return err
	}
	freed := map[netip.Addr]bool{}
	var errs []error
	var live, live64 [cgnat.Planes]int64
	stays := func(k cgnat.Key, pl int) {
		if pl >= 0 {
			live[pl]++
			if k.Addr.Is6() {
				live64[pl]++
			}
		}
	}
	each(func(k cgnat.Key, o cgnat.Out) {
		pl := cgnat.Plane(k.Proto)
		idle := time.Duration(uint16(epoch-o.Epoch)) * EpochLength
		if within(k, idle) {
			stays(k, pl)
			return
		}
		t, err := a.timeout(k, o, slots)
		var ex bool
		if err == nil && idle > t {
			ex, err = a.explicit(k, o, slots)
		}
		if err != nil {
			errs = append(errs, err) // unknown state: the mapping stays
			stays(k, pl)
			return
		}
		if idle <= t || ex {
			stays(k, pl)
			return
		}
		if err := a.dp.ReleaseMapping(k); err != nil {
			errs = append(errs, err)
			stays(k, pl)
			return
		}
		if pl >= 0 {
			a.M.Inc(mExpiredByProt[pl])
		}
		freed[a.s.Datapath.SubOf(k.Addr)] = true // a NAT64 host's subscriber is its /64
	})
	for pl := range live {
		a.mappings[pl].Store(live[pl])
		a.mappings64[pl].Store(live64[pl])
	}
	if a.s.Deterministic {
		return errors.Join(errs...) // blocks are fixed; subscribers stay spent
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for sub := range freed {
		if a.spent[sub] { // a port is free again in its blocks
			delete(a.spent, sub)
			errs = append(errs, a.dp.SetSpent(sub, false))
		}
	}
	errs = append(errs, a.takeBack(now))
	return errors.Join(errs...)
}

// mappingSetReader is what *xdp.Datapath offers beyond Datapath: the
// mappings read into reused buffers, no Go map built.
type mappingSetReader interface {
	ReadCGNATMappings(*xdp.CGNATMappingSet) error
}

// readMappings reads every mapping once, all before the caller walks
// them (the sweep reads the slots after the mappings, as it always has):
// into the agent's reused buffers when the datapath can (at 1M mappings
// a fresh map every 10 s cost a core), else as a map.
// The caller holds sweepMu.
func (a *Agent) readMappings() (func(func(cgnat.Key, cgnat.Out)), error) {
	if r, ok := a.dp.(mappingSetReader); ok {
		if err := r.ReadCGNATMappings(&a.set); err != nil {
			return nil, err
		}
		return a.set.Each, nil
	}
	maps, err := a.dp.CGNATMappings()
	if err != nil {
		return nil, err
	}
	return func(fn func(cgnat.Key, cgnat.Out)) {
		for k, o := range maps {
			fn(k, o)
		}
	}, nil
}

// slotStateReader is what *xdp.Datapath offers beyond Datapath: the
// slots' state bits read into a reused buffer, or one slot's alone, no
// Go map built.
type slotStateReader interface {
	CGNATSlotCount() int
	ReadCGNATSlotStates(*xdp.CGNATSlotStates) error
	CGNATSlotState(cgnat.Slot) (tcp uint8, explicit bool, err error)
}

// The loaded datapath takes the fast ways (a compile-time check: the
// fakes of the tests take the maps).
var (
	_ mappingSetReader = (*xdp.Datapath)(nil)
	_ slotStateReader  = (*xdp.Datapath)(nil)
)

// slotState is a slot's TCP state bits and whether its mapping was made
// on request (zero for a slot that holds no mapping).
type slotState func(cgnat.Slot) (tcp uint8, explicit bool, err error)

// readSlots gives the slots' states for a sweep that will ask about at
// most need of them: from the datapath one lookup each when they are
// fewer than a quarter of the slots (a batch costs about a quarter of a
// lookup an element), else the whole array read at once into the
// agent's reused buffer; from CGNATSlots' map when the datapath offers
// neither. The caller holds sweepMu.
func (a *Agent) readSlots(need int) (slotState, error) {
	if r, ok := a.dp.(slotStateReader); ok {
		if 4*need < r.CGNATSlotCount() {
			return r.CGNATSlotState, nil
		}
		if err := r.ReadCGNATSlotStates(&a.slots); err != nil {
			return nil, err
		}
		return func(sl cgnat.Slot) (uint8, bool, error) {
			tcp, ex := a.slots.State(sl)
			return tcp, ex, nil
		}, nil
	}
	slots, err := a.dp.CGNATSlots()
	if err != nil {
		return nil, err
	}
	return func(sl cgnat.Slot) (uint8, bool, error) {
		in := slots[sl]
		return in.TCP, in.Explicit, nil
	}, nil
}

// leastTimeout is the shortest idle time a mapping of proto may have,
// whatever its slot's state: a mapping idle no longer stays.
func (a *Agent) leastTimeout(proto uint8) time.Duration {
	t := a.s.Timeouts
	switch proto {
	case 17:
		return t.UDP
	case 1:
		return t.ICMP
	}
	return min(t.TCPEstablished, t.TCPTransitory)
}

// timeout is mapping k's idle time: UDP's, ICMP's, or TCP's by the state
// bits its slot gathered (established: both SYNs seen, no RST and not
// both FINs).
func (a *Agent) timeout(k cgnat.Key, o cgnat.Out, slots slotState) (time.Duration, error) {
	t := a.s.Timeouts
	switch k.Proto {
	case 17:
		return t.UDP, nil
	case 1:
		return t.ICMP, nil
	}
	off, ok := a.s.Datapath.PoolPort(o.Addr, o.Port)
	if !ok {
		return t.TCPTransitory, nil
	}
	b, _, err := slots(cgnat.Slot{Plane: 0, Off: off})
	if err != nil {
		return 0, err
	}
	syns := cgnat.TCPSynOut | cgnat.TCPSynIn
	fins := cgnat.TCPFinOut | cgnat.TCPFinIn
	if b&syns == syns && b&cgnat.TCPRst == 0 && b&fins != fins {
		return t.TCPEstablished, nil
	}
	return t.TCPTransitory, nil
}

// takeBack returns the blocks withdrawn at the last sweep that are still
// empty, and withdraws the blocks empty for the grace time.
func (a *Agent) takeBack(now time.Time) error {
	var errs []error
	for id, sub := range a.withdrawn {
		used, err := a.dp.CGNATBlockUsed(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if used != [cgnat.Planes]uint32{} {
			continue // a CPU took a port as it was withdrawn: back when that mapping ends
		}
		if err := a.record(EventRelease, sub, id); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(a.withdrawn, id)
		errs = append(errs, a.pool.Return(sub, id))
		a.M.Inc(mReturned)
	}
	for _, sub := range a.pool.Subscribers() {
		for _, id := range a.pool.Held(sub) {
			if _, ok := a.withdrawn[id]; ok {
				continue
			}
			used, err := a.dp.CGNATBlockUsed(id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if used != [cgnat.Planes]uint32{} {
				delete(a.emptyAt, id)
				continue
			}
			since, ok := a.emptyAt[id]
			if !ok {
				a.emptyAt[id] = now
				continue
			}
			if now.Sub(since) < a.s.Grace {
				continue
			}
			if err := a.dp.WithdrawBlock(sub, id); err != nil {
				errs = append(errs, fmt.Errorf("withdraw block %d of %v: %w", id, sub, err))
				continue
			}
			delete(a.emptyAt, id)
			a.withdrawn[id] = sub
			a.M.Inc(mWithdrawn)
		}
	}
	return errors.Join(errs...)
}

// Held is the blocks sub holds (withdrawn ones included until returned).
func (a *Agent) Held(sub netip.Addr) []uint32 {
	if a.pool == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pool.Held(sub)
}

// Status is what `unmap status` shows of the agent: blocks granted and
// released, subscribers refused for their quota or an empty pool
// (spent), mappings expired, blocks withdrawn, errors, and how many
// subscribers hold blocks now.
func (a *Agent) Status() map[string]uint64 {
	c := a.M
	m := map[string]uint64{
		"grants": c.Get(mGranted), "releases": c.Get(mReturned), "spent": c.Sum(fRefused),
		"expired": c.Sum(fExpired), "withdrawn": c.Get(mWithdrawn), "errors": c.Sum(fErrors),
	}
	for name, n := range c.Snapshot() { // by readable name: refused-quota, log-written, resent, ...
		m[name] = n
	}
	if a.pool != nil {
		a.mu.Lock()
		m["subscribers"] = uint64(len(a.pool.Subscribers()))
		m["spent_now"] = uint64(len(a.spent))
		a.mu.Unlock()
	}
	return m
}
