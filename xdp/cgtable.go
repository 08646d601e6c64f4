package xdp

import (
	"errors"
	"fmt"
	"math/bits"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The CGNAT's NAT44 mappings (cg_table and cg_bmeta in bpf/maps.h, the
// rules in bpf/cg_table.h) as the agent reads and writes them: through
// shared memory mappings of both arrays, with atomics, since the
// datapath puts keys in at the same time. A bucket's four ways are
// 16 bytes each, a key word (struct cg_key whole, its top byte holding
// the used bit and a generation) then the mapping (struct cg_out); a
// key whose bucket is full is in the cg_mappings spill hash, counted in
// the bucket's meta word.

const (
	cgWays      = 4
	cgWayLen    = 16
	cgBucketLen = cgWays * cgWayLen
	cgWayUsed   = uint64(1) << 63
	cgWayGen    = uint64(0x3f) << 56
	cgWayKey    = uint64(1)<<56 - 1
	cgMetaLock  = 1 // the datapath's lock
	cgMetaAgent = 2 // the agent's
	cgMetaSpill = 4 // one key in the spill
	// cgMetaStride is a meta word's room in the mapped array: the
	// kernel rounds an array's values up to 8 bytes.
	cgMetaStride = 8
	// cgLockWait bounds the agent's wait for a bucket a datapath CPU
	// holds: it holds it for a port and a slot write.
	cgLockWait = 100 * time.Millisecond
)

var (
	_ [0]struct{} = [cgWays - len(datapathCgBucket{}.W)]struct{}{}
	_ [0]struct{} = [cgWayLen - unsafe.Sizeof(datapathCgWay{})]struct{}{}
	_ [0]struct{} = [8 - unsafe.Offsetof(datapathCgWay{}.O)]struct{}{}
	_ [0]struct{} = [cgBucketLen - unsafe.Sizeof(datapathCgBucket{})]struct{}{}
)

// cgTableBits is log2 of the buckets for n mappings: room for twice as
// many, so the table is at most half full and a bucket (four ways, two
// keys on average) seldom spills.
func cgTableBits(n uint32) uint32 {
	return uint32(bits.Len32(max(n/2, 1) - 1))
}

// cgSpillEntries sizes the spill for n mappings. Keys spread over the
// buckets as balls in bins: at half full, about 1.7% of them find their
// bucket's four ways taken; an eighth leaves room for worse luck.
func cgSpillEntries(n uint32) uint32 { return max(n/8, 1024) }

// cgTable is the mapped table.
type cgTable struct {
	mem   []byte // cg_table
	meta  []byte // cg_bmeta
	bits  uint32
	seed  tableSeed // cfg_seed, of which the hash uses three words
	spill *ebpf.Map
}

// openCGTable maps cg_table and cg_bmeta, and clears the agent's locks:
// a previous agent killed while it held one left it (the datapath's own
// are never left held).
func openCGTable(table, meta, spill *ebpf.Map, bits uint32, seed tableSeed) (*cgTable, error) {
	n := 1 << bits
	t := &cgTable{bits: bits, seed: seed, spill: spill}
	var err error
	if t.mem, err = mmapArray(table, n*cgBucketLen); err != nil {
		return nil, fmt.Errorf("map the cgnat table: %w", err)
	}
	if t.meta, err = mmapArray(meta, n*cgMetaStride); err != nil {
		unix.Munmap(t.mem)
		return nil, fmt.Errorf("map the cgnat table's locks: %w", err)
	}
	for b := range uint32(n) {
		if atomic.LoadUint32(t.metaWord(b))&cgMetaAgent != 0 {
			atomic.AndUint32(t.metaWord(b), ^uint32(cgMetaAgent))
		}
	}
	return t, nil
}

// mmapArray maps size bytes of mmapable array m, shared, rounded up to
// whole pages.
func mmapArray(m *ebpf.Map, size int) ([]byte, error) {
	if pg := unix.Getpagesize(); size%pg != 0 {
		size += pg - size%pg
	}
	return unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func (t *cgTable) close() error {
	if t == nil {
		return nil
	}
	return errors.Join(unix.Munmap(t.mem), unix.Munmap(t.meta))
}

// cgKeyWord is a key as the C's one word (cg_kword).
func cgKeyWord(ck datapathCgKey) uint64 {
	return uint64(ck.Addr) | uint64(ck.Port)<<32 | uint64(ck.Proto)<<48
}

// cgTableHash is the C's cg_tab_bucket.
func cgTableHash(seed tableSeed, bits uint32, kw uint64) uint32 {
	x := kw ^ seed[2]
	x ^= x >> 33
	x *= seed[0]
	x ^= x >> 29
	x *= seed[1]
	x ^= x >> 32
	return uint32((x >> 1) >> (63 - bits))
}

// wordKey is a key word's key (its used bit and generation ignored).
func wordKey(w uint64) datapathCgKey {
	return datapathCgKey{Addr: uint32(w), Port: uint16(w >> 32), Proto: uint8(w >> 48)}
}

func outWord(o datapathCgOut) uint64 {
	return uint64(o.Addr) | uint64(o.Port)<<32 | uint64(o.Epoch)<<48
}

func wordOut(v uint64) datapathCgOut {
	return datapathCgOut{Addr: uint32(v), Port: uint16(v >> 32), Epoch: uint16(v >> 48)}
}

func (t *cgTable) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&t.mem[off])) }

func (t *cgTable) metaWord(b uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&t.meta[cgMetaStride*b]))
}

func (t *cgTable) bucket(kw uint64) uint32 { return cgTableHash(t.seed, t.bits, kw) }

// find is kw's way in its bucket: the way's offset, its key word and
// its mapping as read together, or -1.
func (t *cgTable) find(kw uint64) (int, uint64, datapathCgOut) {
	b := t.bucket(kw)
	for range 4 { // a way changing under the read: read again
		changed := false
		for j := range cgWays {
			off := int(b)*cgBucketLen + j*cgWayLen
			w := atomic.LoadUint64(t.word(off))
			if w&(cgWayUsed|cgWayKey) != kw|cgWayUsed {
				continue
			}
			o := atomic.LoadUint64(t.word(off + 8))
			if atomic.LoadUint64(t.word(off)) != w {
				changed = true
				break
			}
			return off, w, wordOut(o)
		}
		if !changed {
			break
		}
	}
	return -1, 0, datapathCgOut{}
}

// get is ck's mapping: in the table, or in the spill if its bucket
// counts keys there.
func (t *cgTable) get(ck datapathCgKey) (datapathCgOut, bool, error) {
	kw := cgKeyWord(ck)
	if off, _, o := t.find(kw); off >= 0 {
		return o, true, nil
	}
	if atomic.LoadUint32(t.metaWord(t.bucket(kw))) < cgMetaSpill {
		return datapathCgOut{}, false, nil
	}
	var o datapathCgOut
	err := t.spill.Lookup(&ck, &o)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return o, false, nil
	}
	return o, err == nil, err
}

// lock takes bucket b's agent lock once no CPU holds it.
func (t *cgTable) lock(b uint32) error {
	m := t.metaWord(b)
	deadline := time.Now().Add(cgLockWait)
	for {
		v := atomic.LoadUint32(m)
		if v&(cgMetaLock|cgMetaAgent) == 0 && atomic.CompareAndSwapUint32(m, v, v|cgMetaAgent) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgnat: table bucket %d locked for %v", b, cgLockWait)
		}
		runtime.Gosched()
	}
}

func (t *cgTable) unlock(b uint32) { atomic.AndUint32(t.metaWord(b), ^uint32(cgMetaAgent)) }

// add puts ck's mapping o in if ck has none: false if it has one.
func (t *cgTable) add(ck datapathCgKey, o datapathCgOut) (bool, error) {
	kw := cgKeyWord(ck)
	b := t.bucket(kw)
	if err := t.lock(b); err != nil {
		return false, err
	}
	defer t.unlock(b)
	if _, ok, err := t.get(ck); ok || err != nil {
		return false, err
	}
	for j := range cgWays {
		off := int(b)*cgBucketLen + j*cgWayLen
		old := atomic.LoadUint64(t.word(off))
		if old&cgWayUsed != 0 {
			continue
		}
		gen := (old + 1<<56) & cgWayGen
		atomic.StoreUint64(t.word(off+8), outWord(o))
		atomic.SwapUint64(t.word(off), kw|cgWayUsed|gen)
		return true, nil
	}
	if err := t.spill.Update(&ck, &o, ebpf.UpdateNoExist); err != nil {
		return false, fmt.Errorf("cgnat: mapping spill: %w", err)
	}
	atomic.AddUint32(t.metaWord(b), cgMetaSpill)
	return true, nil
}

// setEpoch sets ck's mapping's epoch.
func (t *cgTable) setEpoch(ck datapathCgKey, epoch uint16) error {
	kw := cgKeyWord(ck)
	for range 4 {
		off, w, o := t.find(kw)
		if off < 0 {
			break
		}
		nv := o
		nv.Epoch = epoch
		if atomic.CompareAndSwapUint64(t.word(off+8), outWord(o), outWord(nv)) {
			if atomic.LoadUint64(t.word(off)) == w {
				return nil
			}
		}
	}
	var o datapathCgOut
	if err := t.spill.Lookup(&ck, &o); err != nil {
		return fmt.Errorf("cgnat: mapping %+v: %w", ck, err)
	}
	o.Epoch = epoch
	return t.spill.Update(&ck, &o, ebpf.UpdateExist)
}

// remove ends ck's mapping and returns it. The way keeps its
// generation, so a reader that matched the key before sees it change.
func (t *cgTable) remove(ck datapathCgKey) (datapathCgOut, error) {
	kw := cgKeyWord(ck)
	for range 4 {
		off, w, o := t.find(kw)
		if off < 0 {
			break
		}
		if atomic.CompareAndSwapUint64(t.word(off), w, w&cgWayGen) {
			return o, nil
		}
	}
	b := t.bucket(kw)
	if atomic.LoadUint32(t.metaWord(b)) >= cgMetaSpill {
		var o datapathCgOut
		if err := t.spill.LookupAndDelete(&ck, &o); err == nil {
			atomic.AddUint32(t.metaWord(b), ^uint32(cgMetaSpill-1))
			return o, nil
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return o, err
		}
	}
	return datapathCgOut{}, fmt.Errorf("cgnat: mapping %+v: %w", ck, ebpf.ErrKeyNotExist)
}

// each appends every mapping of the table, then the spill's, to keys
// and vals.
func (t *cgTable) each(keys []datapathCgKey, vals []datapathCgOut) ([]datapathCgKey, []datapathCgOut, error) {
	for off := 0; off < (1<<t.bits)*cgBucketLen; off += cgWayLen {
		w := atomic.LoadUint64(t.word(off))
		if w&cgWayUsed == 0 {
			continue
		}
		o := atomic.LoadUint64(t.word(off + 8))
		if atomic.LoadUint64(t.word(off)) != w {
			continue // ended (or ended and made again) as read
		}
		keys = append(keys, wordKey(w))
		vals = append(vals, wordOut(o))
	}
	return readHash(t.spill, keys, vals)
}

// count is how many mappings the table and its spill hold.
func (t *cgTable) count() (int, error) {
	n := 0
	for off := 0; off < (1<<t.bits)*cgBucketLen; off += cgWayLen {
		if atomic.LoadUint64(t.word(off))&cgWayUsed != 0 {
			n++
		}
	}
	for b := range uint32(1 << t.bits) {
		n += int(atomic.LoadUint32(t.metaWord(b)) / cgMetaSpill)
	}
	return n, nil
}

// PinnedCGNATMappings counts the NAT44 mappings of the relay whose maps
// are pinned in dir (its pin_path), from outside it: the table's used
// ways, read in batches with the bpf syscall, and the spill's entries.
func PinnedCGNATMappings(dir string) (int, error) {
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	table, err := ebpf.LoadPinnedMap(filepath.Join(dir, datapathMapCgTable), ro)
	if err != nil {
		return 0, err
	}
	defer table.Close()
	spill, err := ebpf.LoadPinnedMap(filepath.Join(dir, datapathMapCgMappings), ro)
	if err != nil {
		return 0, err
	}
	defer spill.Close()
	n := 0
	var cursor ebpf.MapBatchCursor
	keys, vals := make([]uint32, cgBatch), make([]datapathCgBucket, cgBatch)
	for {
		got, err := table.BatchLookup(&cursor, keys, vals, nil)
		for _, b := range vals[:got] {
			for _, w := range b.W {
				if w.K&cgWayUsed != 0 {
					n++
				}
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	var k datapathCgKey
	var v datapathCgOut
	it := spill.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n, it.Err()
}
