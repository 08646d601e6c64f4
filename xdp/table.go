package xdp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The flow table (flowtab in bpf/maps.h, its types in bpf/types.h) holds every key that is not a
// carrier of this end: an array of buckets of four ways, the bucket picked
// by a seeded hash of the key (tableHash, the same multiply-shift hash
// as table_bucket in bpf/lookup.h), the key compared whole in each way. A
// key whose bucket is full goes to the spill hash of its family (flows or
// flows4) and the bucket is marked spill while it has keys there, so the
// program looks there only then.
//
// The agent writes the table through a shared memory mapping, not the
// bpf syscall, which would rewrite the whole bucket and lose the counter
// increments of its other ways. The program reads a way without a lock:
// a way is empty while its key's first word (family, protocol, ports) is
// zero, so a new key is published by writing its entry and the rest of
// its key first and that word last, with an atomic store (stores are seen
// in order); a delete zeroes that word alone. A way just emptied is not
// reused for wayQuarantine, so a program that matched its old key before
// the delete still reads the old entry whole. Replacing the entry of a key
// in place (Put over an existing key) can be seen half done by a packet
// in flight, as the kernel's in-place update of a hash entry can.

const (
	flowWays      = 4
	wayLen        = 96  // struct flow_way
	bucketLen     = 392 // struct flow_bucket: four ways, spill, pad
	spillOff      = flowWays * wayLen
	entryOff      = 40 // the entry in a way
	packetsOff    = entryOff + 40
	bytesOff      = entryOff + 48
	flagsOff      = entryOff + 2
	maxBuckets    = 1 << 24
	wayQuarantine = time.Second
)

// The offsets above are the C's (struct flow_bucket, flow_way, flow_entry
// in bpf/types.h), which the table is written at through raw memory:
// each must equal the bpf2go-generated mirror's, or this fails to
// compile (an array length of their difference, which must be 0).
var (
	_ [0]struct{} = [flowWays - len(datapathFlowBucket{}.W)]struct{}{}
	_ [0]struct{} = [wayLen - unsafe.Sizeof(datapathFlowWay{})]struct{}{}
	_ [0]struct{} = [bucketLen - unsafe.Sizeof(datapathFlowBucket{})]struct{}{}
	_ [0]struct{} = [spillOff - unsafe.Offsetof(datapathFlowBucket{}.Spill)]struct{}{}
	_ [0]struct{} = [entryOff - unsafe.Offsetof(datapathFlowWay{}.E)]struct{}{}
	_ [0]struct{} = [entryOff - unsafe.Sizeof(datapathFlowKey{})]struct{}{} // a way's key, then its entry
	_ [0]struct{} = [packetsOff - entryOff - unsafe.Offsetof(datapathFlowEntry{}.Packets)]struct{}{}
	_ [0]struct{} = [bytesOff - entryOff - unsafe.Offsetof(datapathFlowEntry{}.Bytes)]struct{}{}
	_ [0]struct{} = [flagsOff - entryOff - unsafe.Offsetof(datapathFlowEntry{}.Flags)]struct{}{}
	_ [0]struct{} = [wayLen - entryOff - unsafe.Sizeof(datapathFlowEntry{})]struct{}{}
)

// BucketBytes is a flow-table bucket's size: four keys and entries.
const BucketBytes = bucketLen

// DefaultBuckets is the flow table's size when Options.Buckets is 0:
// 131072 ways, 12.25 MiB shared by all CPUs. Half full with 65536 keys,
// four-way buckets almost never overflow into the spill hashes.
const DefaultBuckets = 1 << 15

// tableSeed is the hash's multipliers, one per key word, odd.
type tableSeed [5]uint64

func newSeed() (tableSeed, error) {
	var b [40]byte
	if _, err := rand.Read(b[:]); err != nil {
		return tableSeed{}, err
	}
	return seedOf(b[:]), nil
}

func seedOf(b []byte) (s tableSeed) {
	for i := range s {
		s[i] = binary.LittleEndian.Uint64(b[8*i:]) | 1
	}
	return s
}

func (s tableSeed) bytes() []byte {
	b := make([]byte, 0, 40)
	for _, w := range s {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

// flowTable is the agent's side of the flow table: the mapping, the seed
// and mask the programs were loaded with, and what the program cannot be
// told: which ways are in quarantine and how many keys each bucket has in
// the spill hashes. Callers hold Datapath.mu.
type flowTable struct {
	mem     []byte
	seed    tableSeed
	bits    int               // log2(buckets)
	freed   map[int]time.Time // way (its offset) -> when it was emptied
	spilled map[uint32]int    // bucket -> its keys in flows/flows4
	now     func() time.Time
	used    int // ways holding a key (TableStats)
	spills  int // the sum of spilled (TableStats)
}

// checkBuckets validates a table size.
func checkBuckets(n uint32) error {
	if n == 0 || n > maxBuckets || n&(n-1) != 0 {
		return fmt.Errorf("flow table: %d buckets, want a power of two up to %d", n, maxBuckets)
	}
	return nil
}

// openTable maps the table of m (n buckets, hashed with seed).
func openTable(m *ebpf.Map, n uint32, seed tableSeed) (*flowTable, error) {
	mem, err := mmapArray(m, int(n)*bucketLen)
	if err != nil {
		return nil, fmt.Errorf("map the flow table: %w", err)
	}
	t := &flowTable{
		mem: mem[:int(n)*bucketLen], seed: seed, bits: bits.TrailingZeros32(n),
		freed: map[int]time.Time{}, spilled: map[uint32]int{}, now: time.Now,
	}
	// A pinned table taken over comes with its keys.
	for off := 0; off < len(t.mem); off += bucketLen {
		for j := range flowWays {
			if atomic.LoadUint64(t.word(off+j*wayLen)) != 0 {
				t.used++
			}
		}
	}
	return t, nil
}

func (t *flowTable) close() error {
	if t == nil || t.mem == nil {
		return nil
	}
	err := unix.Munmap(t.mem[:cap(t.mem)])
	t.mem = nil
	return err
}

// flowMix is table_bucket's mixing multiplier (odd, fixed: the keyed
// part is the sum before it).
const flowMix = 0xd6e8feb86659fd93

// tableHash is table_bucket of bpf/lookup.h: kb is struct flow_key's bytes.
func tableHash(seed tableSeed, bits int, kb []byte) uint32 {
	var h uint64
	for i := range seed {
		h += binary.LittleEndian.Uint64(kb[8*i:]) * seed[i]
	}
	h ^= h >> 32
	h *= flowMix
	h ^= h >> 32
	return uint32(h >> 1 >> (63 - bits))
}

func (t *flowTable) bucket(kb []byte) uint32 { return tableHash(t.seed, t.bits, kb) }

func (t *flowTable) wayAt(b uint32, j int) int { return int(b)*bucketLen + j*wayLen }

func (t *flowTable) word(off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&t.mem[off]))
}

// find returns the offset of the way holding key kb in bucket b.
func (t *flowTable) find(b uint32, kb []byte) (int, bool) {
	head := binary.LittleEndian.Uint64(kb)
	for j := range flowWays {
		off := t.wayAt(b, j)
		if atomic.LoadUint64(t.word(off)) == head && string(t.mem[off+8:off+40]) == string(kb[8:40]) {
			return off, true
		}
	}
	return 0, false
}

// free returns the offset of an empty way of bucket b that is out of
// quarantine.
func (t *flowTable) free(b uint32) (int, bool) {
	for j := range flowWays {
		off := t.wayAt(b, j)
		if atomic.LoadUint64(t.word(off)) != 0 {
			continue
		}
		if at, ok := t.freed[off]; ok {
			if t.now().Sub(at) < wayQuarantine {
				continue
			}
			delete(t.freed, off)
		}
		return off, true
	}
	return 0, false
}

// publish writes key kb and entry eb into the empty way at off.
func (t *flowTable) publish(off int, kb, eb []byte) {
	copy(t.mem[off+entryOff:off+wayLen], eb)
	copy(t.mem[off+8:off+40], kb[8:40])
	atomic.StoreUint64(t.word(off), binary.LittleEndian.Uint64(kb))
	t.used++
}

// replace rewrites the entry of the way at off, counters zeroed.
func (t *flowTable) replace(off int, eb []byte) {
	copy(t.mem[off+entryOff:off+packetsOff], eb[:40])
	atomic.StoreUint64(t.word(off+packetsOff), 0)
	atomic.StoreUint64(t.word(off+bytesOff), 0)
}

// empty deletes the key of the way at off.
func (t *flowTable) empty(off int) {
	atomic.StoreUint64(t.word(off), 0)
	t.freed[off] = t.now()
	t.used--
}

func (t *flowTable) setSpill(b uint32, n int) {
	t.spills += max(n, 0) - t.spilled[b]
	if n > 0 {
		t.spilled[b] = n
	} else {
		delete(t.spilled, b)
	}
	v := uint32(0)
	if n > 0 {
		v = 1
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&t.mem[int(b)*bucketLen+spillOff])), v)
}

func (t *flowTable) counters(off int) Counters {
	return Counters{
		Packets: atomic.LoadUint64(t.word(off + packetsOff)),
		Bytes:   atomic.LoadUint64(t.word(off + bytesOff)),
		Ended:   binary.LittleEndian.Uint16(t.mem[off+flagsOff:]),
	}
}

// each calls fn with the key and entry bytes of every used way.
func (t *flowTable) each(fn func(kb, eb []byte)) {
	for off := 0; off+bucketLen <= len(t.mem); off += bucketLen {
		for j := range flowWays {
			w := off + j*wayLen
			head := atomic.LoadUint64(t.word(w))
			if head == 0 {
				continue
			}
			kb := binary.LittleEndian.AppendUint64(make([]byte, 0, 40), head)
			kb = append(kb, t.mem[w+8:w+40]...)
			fn(kb, append([]byte(nil), t.mem[w+entryOff:w+wayLen]...))
		}
	}
}

// keyBytes is struct flow_key as the program sees it.
func keyBytes(ck datapathFlowKey) []byte {
	b, _ := binary.Append(nil, binary.LittleEndian, ck) // fixed-size: cannot fail
	return b
}

func entryBytes(ce datapathFlowEntry) []byte {
	b, _ := binary.Append(nil, binary.LittleEndian, ce)
	return b
}

// key4 is a flows4 key as struct flow_key.
func key4(k4 datapathFlowKey4) datapathFlowKey {
	return datapathFlowKey{Family: 4, Proto: k4.Proto, Sport: k4.Sport, Dport: k4.Dport,
		Saddr: [4]uint32{k4.Saddr}, Daddr: [4]uint32{k4.Daddr}}
}

// putTable installs ck -> ce for a key that is not a carrier of this end.
func (d *Datapath) putTable(ck datapathFlowKey, ce datapathFlowEntry, flags ebpf.MapUpdateFlags) error {
	kb, eb := keyBytes(ck), entryBytes(ce)
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tab
	b := t.bucket(kb)
	if off, ok := t.find(b, kb); ok {
		if flags == ebpf.UpdateNoExist {
			return fmt.Errorf("flow table: %w", ebpf.ErrKeyExist)
		}
		t.replace(off, eb)
		return nil
	}
	if t.spilled[b] > 0 && d.inFlows(ck) {
		return d.putFlows(ck, ce, flags)
	}
	if off, ok := t.free(b); ok {
		t.publish(off, kb, eb)
		return nil
	}
	// The bucket is full: the key goes to its spill hash, then the bucket
	// tells the program to look there.
	if err := d.putFlows(ck, ce, flags); err != nil {
		return err
	}
	t.setSpill(b, t.spilled[b]+1)
	return nil
}

// deleteTable removes a key that is not a carrier of this end.
func (d *Datapath) deleteTable(ck datapathFlowKey) error {
	kb := keyBytes(ck)
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tab
	b := t.bucket(kb)
	if off, ok := t.find(b, kb); ok {
		t.empty(off)
		return nil
	}
	if t.spilled[b] == 0 {
		return fmt.Errorf("flow table: %w", ebpf.ErrKeyNotExist)
	}
	if err := d.deleteFlows(ck); err != nil {
		return err
	}
	t.setSpill(b, t.spilled[b]-1)
	return nil
}

// tableCounters reads the counters of a key that is not a carrier of
// this end.
func (d *Datapath) tableCounters(ck datapathFlowKey) (Counters, error) {
	kb := keyBytes(ck)
	d.mu.Lock()
	t := d.tab
	b := t.bucket(kb)
	off, ok := t.find(b, kb)
	spilled := t.spilled[b] > 0
	var c Counters
	if ok {
		c = t.counters(off)
	}
	d.mu.Unlock()
	switch {
	case ok:
		return c, nil
	case spilled:
		return d.flowsCounters(ck)
	}
	return Counters{}, fmt.Errorf("flow table: %w", ebpf.ErrKeyNotExist)
}
