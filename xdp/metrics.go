package xdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/session/xlat"
)

// ReasonReader reads the per-CPU reason counters with one batch lookup
// into buffers it keeps, so a metrics scrape costs no allocation per
// reason (Reasons does one lookup, and one allocation, per reason).
type ReasonReader struct {
	m      *ebpf.Map
	ncpu   int
	keys   []uint32
	values []uint64
}

// NewReasonReader makes a reader of d's reason counters; its Read is not
// safe for concurrent use (metrics.Reasons serializes it).
func (d *Datapath) NewReasonReader() (*ReasonReader, error) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	n := int(d.objs.Reasons.MaxEntries())
	return &ReasonReader{m: d.objs.Reasons, ncpu: ncpu, keys: make([]uint32, n), values: make([]uint64, n*ncpu)}, nil
}

// Read sums every reason's counter over the CPUs into out.
func (r *ReasonReader) Read(out *[xlat.NumReasons]uint64) error {
	var cursor ebpf.MapBatchCursor
	n, err := r.m.BatchLookup(&cursor, r.keys, r.values, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("reasons: %w", err)
	}
	*out = [xlat.NumReasons]uint64{}
	for i := range n {
		k := r.keys[i]
		if k >= uint32(xlat.NumReasons) {
			continue
		}
		for _, v := range r.values[i*r.ncpu : (i+1)*r.ncpu] {
			out[k] += v
		}
	}
	return nil
}

// TableStats are the flow table's fill: its ways, those holding a key,
// and the keys that overflowed their bucket into the spill hashes.
type TableStats struct {
	Ways, Used, Spilled int
}

// TableStats reads the flow table's fill.
func (d *Datapath) TableStats() TableStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tab
	if t == nil {
		return TableStats{}
	}
	return TableStats{Ways: len(t.mem) / wayLen, Used: t.used, Spilled: t.spills}
}
