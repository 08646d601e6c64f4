package xdp

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/unmap-dev/unmap/session/xlat"
)

// Miss is a packet the datapath had no entry for and handed to the agent
// instead of forwarding it.
type Miss struct {
	Ifindex uint32
	Role    xlat.Role
	Len     int    // the whole frame's length
	Data    []byte // its first bytes (at most xlat.MissSnap)
}

// MissReader reads misses from the ring buffer. It is not safe for
// concurrent Reads: they share one record buffer.
type MissReader struct {
	r   *ringbuf.Reader
	rec ringbuf.Record // reused by every Read: the ring's copy costs no allocation
}

// Misses opens a reader on the miss ring. Close it when done.
func (d *Datapath) Misses() (*MissReader, error) {
	r, err := ringbuf.NewReader(d.objs.Misses)
	if err != nil {
		return nil, err
	}
	return &MissReader{r: r}, nil
}

// SetDeadline bounds the next Read (zero: wait forever).
func (m *MissReader) SetDeadline(t time.Time) { m.r.SetDeadline(t) }

// Read waits for the next miss. Its Data is the miss's own copy (the
// slow path holds it while the flow opens); the record it is read from
// is reused, so a miss costs one allocation.
func (m *MissReader) Read() (Miss, error) {
	if err := m.r.ReadInto(&m.rec); err != nil {
		return Miss{}, err
	}
	return parseMiss(m.rec.RawSample)
}

// parseMiss decodes a struct miss_rec, bounded by its own length.
func parseMiss(b []byte) (Miss, error) {
	if len(b) < missHdrLen {
		return Miss{}, fmt.Errorf("miss record of %d bytes", len(b))
	}
	caplen := int(binary.LittleEndian.Uint16(b[8:]))
	if caplen > xlat.MissSnap || missHdrLen+caplen > len(b) {
		return Miss{}, fmt.Errorf("miss record claims %d bytes", caplen)
	}
	return Miss{
		Ifindex: binary.LittleEndian.Uint32(b[0:]),
		Len:     int(binary.LittleEndian.Uint32(b[4:])),
		Role:    xlat.Role(b[10]),
		Data:    append([]byte(nil), b[missHdrLen:missHdrLen+caplen]...),
	}, nil
}

// Close stops the reader.
func (m *MissReader) Close() error { return m.r.Close() }
