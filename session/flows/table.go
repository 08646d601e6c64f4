package flows

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// Options configure a Table; the zero value is usable.
type Options struct {
	Timeouts Timeouts         // zero fields mean defaults
	Now      func() time.Time // clock; nil means time.Now
	MaxFlows int              // refuse Add beyond this many flows; 0 means no limit
	// Grace is added to every flow's timeout: the relay waits it past a
	// flow's idle time for the edge, whose table is authoritative, to
	// close the flow first. Zero at the edge.
	Grace time.Duration
}

// Entry is a flow as Snapshot, Get and Expire report it.
type Entry struct {
	Flow     session.Flow
	Carrier  session.Carrier
	State    State
	LastSeen time.Time
	Expires  time.Time // when it expires if not seen again
	// Lifetime, if longer than the table's timeout for the flow, is how
	// long it may stay idle while open: what the edge asked the relay
	// for. AddEntry takes it; zero everywhere else.
	Lifetime time.Duration
	// Value is what the table's user keeps with the flow (AddEntry; the
	// relay's carrier books): the table is its index by flow.
	Value any
}

// Refusal reasons, counted in Table.Refused. Values are stable.
const (
	ReasonDuplicate   = "duplicate"    // Add of a flow already in the table
	ReasonFull        = "table-full"   // Add beyond MaxFlows
	ReasonUnknownFlow = "unknown-flow" // Touch, Update or Delete of a flow not in the table
	ReasonBadState    = "bad-state"    // a State that does not exist
)

// Errors for errors.Is.
var (
	ErrDuplicate   = errors.New("flows: flow already in the table")
	ErrFull        = errors.New("flows: table full")
	ErrUnknownFlow = errors.New("flows: no such flow")
	ErrBadState    = errors.New("flows: no such state")
)

// entry is one flow. Times are nanoseconds since the table's epoch on
// its (monotonic) clock: 8 bytes each instead of a time.Time's 24.
type entry struct {
	flow    session.Flow
	carrier session.Carrier
	seen    int64 // last seen
	life    int64 // Entry.Lifetime
	value   any   // Entry.Value
	idx     int32 // position in the heap
	state   State
}

// slot is a place in the heap: a flow and its heap key, which is never
// later than its real deadline. The key is kept in the heap's array, so
// ordering it reads no entry. A removed flow leaves its slot empty (e
// nil) until it comes to the top or the heap is compacted: removing a
// flow costs no sifting.
type slot struct {
	due int64
	e   *entry
}

// Table is the flow table. It is safe for concurrent use.
type Table struct {
	mu    sync.Mutex
	t     Timeouts
	now   func() time.Time
	epoch time.Time
	max   int
	grace int64
	m     map[session.Flow]*entry
	h     []slot   // min-heap on due
	free  []*entry // removed entries, reused by add: a flood of short flows allocates none
	empty int      // slots of h left by removed flows

	added, expired, deleted uint64
	refused                 map[string]uint64
}

// New checks o and makes an empty table.
func New(o Options) (*Table, error) {
	if err := o.Timeouts.Check(); err != nil {
		return nil, err
	}
	if o.Grace < 0 {
		return nil, fmt.Errorf("flows: Grace %v is negative", o.Grace)
	}
	if o.MaxFlows < 0 {
		return nil, fmt.Errorf("flows: MaxFlows %d is negative", o.MaxFlows)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Table{
		t:       o.Timeouts.WithDefaults(),
		now:     now,
		epoch:   now(),
		max:     o.MaxFlows,
		grace:   int64(o.Grace),
		m:       make(map[session.Flow]*entry),
		refused: make(map[string]uint64),
	}, nil
}

// Timeouts are the table's timeouts, defaults filled in.
func (t *Table) Timeouts() Timeouts { return t.t }

func (t *Table) tick() int64 { return int64(t.now().Sub(t.epoch)) }

func (t *Table) refuse(reason string, err error, f session.Flow) error {
	t.refused[reason]++
	return fmt.Errorf("%w: %v", err, f)
}

func (t *Table) deadline(e *entry) int64 {
	d := int64(t.t.For(e.flow.Proto, e.state))
	if e.state == StateOpen {
		d = max(d, e.life)
	}
	return e.seen + d + t.grace
}

// Add puts a new flow in the table, seen now.
func (t *Table) Add(f session.Flow, c session.Carrier, s State) error {
	return t.AddEntry(Entry{Flow: f, Carrier: c, State: s})
}

// AddEntry puts a new flow in the table as x has it: its flow, carrier,
// state, lifetime, value, and when it was last seen (zero: now; a time
// later than now counts as now). Expires is ignored.
func (t *Table) AddEntry(x Entry) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[x.Flow]; ok {
		return t.refuse(ReasonDuplicate, ErrDuplicate, x.Flow)
	}
	return t.add(x)
}

// Put is AddEntry, but a flow already in the table is replaced: its
// entry as it was is returned.
func (t *Table) Put(x Entry) (old Entry, replaced bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[x.Flow]; ok && x.State < numStates {
		old, replaced = t.export(e), true
		t.remove(e)
		t.deleted++
	}
	return old, replaced, t.add(x)
}

// add is AddEntry's work once x.Flow is known not to be in; t.mu held.
func (t *Table) add(x Entry) error {
	f, s := x.Flow, x.State
	if s >= numStates {
		return t.refuse(ReasonBadState, ErrBadState, f)
	}
	if t.max > 0 && len(t.m) >= t.max {
		return t.refuse(ReasonFull, ErrFull, f)
	}
	var e *entry
	if n := len(t.free); n > 0 {
		e, t.free = t.free[n-1], t.free[:n-1]
	} else {
		e = new(entry)
	}
	*e = entry{flow: f, carrier: x.Carrier, seen: t.tick(), state: s, life: int64(max(x.Lifetime, 0)), value: x.Value}
	if !x.LastSeen.IsZero() {
		e.seen = min(int64(x.LastSeen.Sub(t.epoch)), e.seen)
	}
	t.m[f] = e
	t.push(e, t.deadline(e))
	t.added++
	return nil
}

// Get returns the entry of f.
func (t *Table) Get(f session.Flow) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[f]
	if !ok {
		return Entry{}, false
	}
	return t.export(e), true
}

// Value is what f was added with (Entry.Value).
func (t *Table) Value(f session.Flow) (any, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[f]
	if !ok {
		return nil, false
	}
	return e.value, true
}

// Touch marks f seen now.
func (t *Table) Touch(f session.Flow) error { return t.TouchAt(f, t.now()) }

// TouchAt marks f seen at when (a last-seen time read from the XDP
// maps); a time older than the one stored is ignored, and one later
// than now counts as now. It never moves the
// heap: the deadline is recomputed when it comes due.
func (t *Table) TouchAt(f session.Flow, when time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[f]
	if !ok {
		return t.refuse(ReasonUnknownFlow, ErrUnknownFlow, f)
	}
	// A time ahead of the table's clock (skew in converting the XDP
	// maps' boot-time stamps) counts as now, so it cannot stretch a
	// flow's life.
	at := min(int64(when.Sub(t.epoch)), t.tick())
	if at > e.seen {
		e.seen = at
	}
	return nil
}

// Update sets f's state and carrier (a carrier the relay confirmed, or
// re-bound to a new CGNAT port). A state with a shorter timeout (a FIN
// seen on an established flow) can bring the deadline forward, which
// moves the flow up the heap.
func (t *Table) Update(f session.Flow, c session.Carrier, s State) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s >= numStates {
		return t.refuse(ReasonBadState, ErrBadState, f)
	}
	e, ok := t.m[f]
	if !ok {
		return t.refuse(ReasonUnknownFlow, ErrUnknownFlow, f)
	}
	e.carrier, e.state = c, s
	if d := t.deadline(e); d < t.h[e.idx].due {
		t.h[e.idx].due = d
		t.up(int(e.idx))
	}
	return nil
}

// Delete removes f (closed by the relay or the agent) and returns it.
func (t *Table) Delete(f session.Flow) (Entry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[f]
	if !ok {
		return Entry{}, t.refuse(ReasonUnknownFlow, ErrUnknownFlow, f)
	}
	out := t.export(e)
	t.remove(e)
	t.deleted++
	return out, nil
}

// Remove is Delete without the entry's copy, for a user that keeps its
// own (the relay): it reports whether f was in.
func (t *Table) Remove(f session.Flow) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[f]
	if ok {
		t.remove(e)
		t.deleted++
	}
	return ok
}

// Expire removes flows whose idle time is up, at most limit of them (no
// limit when limit <= 0), and appends them to dst. A sweeper that calls
// it in batches until it returns fewer than limit keeps the table's lock
// for a bounded time even when a million flows expire at once.
func (t *Table) Expire(dst []Entry, limit int) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.tick()
	n := 0
	for t.dropEmptyTop() && t.h[0].due <= now && (limit <= 0 || n < limit) {
		e := t.h[0].e
		if d := t.deadline(e); d > now {
			// Seen since it was queued: move it to its real deadline.
			t.h[0].due = d
			t.down(0)
			continue
		}
		dst = append(dst, t.export(e))
		t.remove(e)
		t.expired++
		n++
	}
	return dst
}

// NextDue is the earliest time a flow may expire, for the sweeper's
// sleep; ok is false when the table is empty. Flows seen since may turn
// out to live longer; none expires earlier.
func (t *Table) NextDue() (when time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.dropEmptyTop() {
		return time.Time{}, false
	}
	return t.epoch.Add(time.Duration(t.h[0].due)), true
}

// Len is the number of flows.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// Snapshot copies every flow, for replay to the relay after a reconnect.
func (t *Table) Snapshot() []Entry { return t.AppendSnapshot(nil) }

// AppendSnapshot appends every flow to dst: a poller that reads them all
// again and again reuses its slice. It walks the heap's array, not the
// map: a slice is read in order, a map is not.
func (t *Table) AppendSnapshot(dst []Entry) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	dst = slices.Grow(dst, len(t.m))
	for _, sl := range t.h {
		if sl.e != nil {
			dst = append(dst, t.export(sl.e))
		}
	}
	return dst
}

// Stats is a snapshot of a table's counters.
type Stats struct {
	Flows                   int
	Added, Expired, Deleted uint64
	Refused                 map[string]uint64 // by reason
}

// Stats snapshots t's counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := make(map[string]uint64, len(t.refused))
	for k, v := range t.refused {
		r[k] = v
	}
	return Stats{Flows: len(t.m), Added: t.added, Expired: t.expired, Deleted: t.deleted, Refused: r}
}

func (t *Table) export(e *entry) Entry {
	return Entry{
		Flow:     e.flow,
		Carrier:  e.carrier,
		State:    e.state,
		LastSeen: t.epoch.Add(time.Duration(e.seen)),
		Expires:  t.epoch.Add(time.Duration(t.deadline(e))),
		Lifetime: time.Duration(e.life),
		Value:    e.value,
	}
}

func (t *Table) remove(e *entry) {
	delete(t.m, e.flow)
	t.h[e.idx].e = nil
	*e = entry{idx: -1}
	if len(t.free) < maxFree {
		t.free = append(t.free, e)
	}
	t.empty++
	if t.empty > 64 && t.empty > len(t.h)/2 {
		t.compact()
	}
}

// maxFree bounds the entries kept for reuse.
const maxFree = 4096

// compact takes the empty slots out of the heap and orders it again: a
// pass over the array every time as many flows were removed as are left,
// so each removal costs O(1) in the long run.
func (t *Table) compact() {
	live := t.h[:0]
	for _, sl := range t.h {
		if sl.e != nil {
			sl.e.idx = int32(len(live))
			live = append(live, sl)
		}
	}
	clear(t.h[len(live):])
	t.h, t.empty = live, 0
	for i := len(t.h)/2 - 1; i >= 0; i-- {
		t.down(i)
	}
}

// dropEmptyTop pops the empty slots at the top of the heap and reports
// whether a flow is left at the top.
func (t *Table) dropEmptyTop() bool {
	for len(t.h) > 0 && t.h[0].e == nil {
		last := len(t.h) - 1
		t.swap(0, last)
		t.h[last] = slot{}
		t.h = t.h[:last]
		t.empty--
		t.down(0)
	}
	return len(t.h) > 0
}

func (t *Table) push(e *entry, due int64) {
	e.idx = int32(len(t.h))
	t.h = append(t.h, slot{due, e})
	t.up(len(t.h) - 1)
}

func (t *Table) swap(i, j int) {
	t.h[i], t.h[j] = t.h[j], t.h[i]
	if e := t.h[i].e; e != nil {
		e.idx = int32(i)
	}
	if e := t.h[j].e; e != nil {
		e.idx = int32(j)
	}
}

func (t *Table) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if t.h[p].due <= t.h[i].due {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *Table) down(i int) {
	n := len(t.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && t.h[r].due < t.h[l].due {
			c = r
		}
		if t.h[i].due <= t.h[c].due {
			return
		}
		t.swap(i, c)
		i = c
	}
}
