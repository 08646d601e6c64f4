package xdp

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// With nobody reading, the miss ring fills: later misses are dropped and
// counted as drop-miss-full, and exactly the counted misses can be read.
func TestMissRingFull(t *testing.T) {
	h := newHarness(t)
	in := xlattest.Build(xlattest.Spec{Proto: 6, Src: xlattest.SiteHost, SPort: 41000, Dst: xlattest.Remote6, DPort: 443, Payload: make([]byte, 1400)})
	const n = 1000
	before, err := h.edge.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		ret, err := h.edge.Program(xlat.RoleEdgeLAN).Run(&ebpf.RunOptions{Data: in})
		if err != nil {
			t.Fatal(err)
		}
		if xlat.Verdict(ret) != xlat.Drop {
			t.Fatalf("verdict %v, want XDP_DROP", xlat.Verdict(ret))
		}
	}
	after, err := h.edge.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	missed := after[xlat.ReasonMiss] - before[xlat.ReasonMiss]
	full := after[xlat.ReasonDropMissFull] - before[xlat.ReasonDropMissFull]
	if missed+full != n || full == 0 || missed == 0 {
		t.Fatalf("%d misses, %d ring-full drops of %d", missed, full, n)
	}
	read := uint64(0)
	for {
		h.edgeM.SetDeadline(time.Now().Add(20 * time.Millisecond))
		m, err := h.edgeM.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Data) != len(in) || m.Len != len(in) {
			t.Fatalf("record of %d/%d bytes, want %d", len(m.Data), m.Len, len(in))
		}
		read++
	}
	if read != missed {
		t.Fatalf("read %d records, %d counted", read, missed)
	}
	t.Logf("ring held %d misses of %d-byte frames; %d dropped as full", missed, len(in), full)
}

// parseMiss is bounded by its own length fields.
func FuzzParseMiss(f *testing.F) {
	f.Add(make([]byte, 16))
	f.Add(append([]byte{0, 0, 0, 0, 60, 0, 0, 0, 4, 0, 1, 0, 0, 0, 0, 0}, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMiss(b)
		if err == nil && (len(m.Data) > xlat.MissSnap || len(m.Data) > len(b)-missHdrLen) {
			t.Fatalf("parsed %d data bytes from %d", len(m.Data), len(b))
		}
	})
}

// PutPair installs both directions or neither; Delete removes an entry.
func TestPutPairRollback(t *testing.T) {
	h := newHarness(t)
	d := h.edge
	k := func(sport uint16) xlat.Key {
		return xlat.Key{Proto: 6, Src: xlattest.SiteHost, SPort: sport, Dst: xlattest.Remote6, DPort: 443}
	}
	e := xlat.Entry{Action: xlat.ActXlat64, Proto: 6, Src: xlattest.EdgeWAN, SPort: 21000, Dst: xlattest.RelayAddr, DPort: 30000}
	back := Mapping{Key: xlat.Key{Proto: 6, Src: xlattest.RelayAddr, SPort: 30000, Dst: xlattest.EdgeWAN, DPort: 21000},
		Entry: xlat.Entry{Action: xlat.ActXlat46, Proto: 6, Src: xlattest.Remote6, SPort: 443, Dst: xlattest.SiteHost, DPort: 41000}}
	out := Mapping{Key: k(41000), Entry: e}
	if err := d.Put(out.Key, out.Entry); err != nil {
		t.Fatal(err)
	}
	if err := d.PutPair(out, back); !errors.Is(err, ebpf.ErrKeyExist) {
		t.Fatalf("PutPair over an existing key: %v", err)
	}
	if _, err := d.FlowCounters(back.Key); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("return direction left behind after a failed pair: %v", err)
	}
	if err := d.Delete(out.Key); err != nil {
		t.Fatal(err)
	}
	if err := d.PutPair(out, back); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mapping{out, back} {
		if _, err := d.FlowCounters(m.Key); err != nil {
			t.Errorf("%v: %v", m.Key, err)
		}
	}
	if err := d.DeletePair(out, back); err != nil {
		t.Fatal(err)
	}
	if _, err := d.FlowCounters(out.Key); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("deleted pair still there: %v", err)
	}
	if err := d.Put(k(1), xlat.Entry{Action: xlat.ActXlat46, Src: xlattest.EdgeWAN, Dst: xlattest.RelayAddr}); err == nil {
		t.Error("entry with IPv4 addresses for an IPv6 action accepted")
	}
}
