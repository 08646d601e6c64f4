package xdp

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// cgnatReadFilled loads a datapath with NAT44 and NAT64, room for max
// mappings of each, and writes n4 NAT44 mappings into the table (as the
// agent puts an explicit one: its bucket, or the spill) and n6 NAT64
// ones straight into their hash (what the sweep reads; no slots or
// blocks behind them).
func cgnatReadFilled(tb testing.TB, max uint32, n4, n6 int) *Datapath {
	tb.Helper()
	priv.Require(tb)
	d, err := Load(xlattest.Config(xlattest.RelayAddr), Options{CGNAT: cgnattest.Config(cgnat.EIF), CGNATMappings: max})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	proto := func(i int) uint8 { return [3]uint8{6, 17, 1}[i%3] }
	out := func(i int) datapathCgOut {
		return datapathCgOut{Addr: net32(cgnattest.Pub1), Port: hport(uint16(1024 + i%60000)), Epoch: uint16(i)}
	}
	k4, v4 := make([]datapathCgKey, n4), make([]datapathCgOut, n4)
	for i := range n4 {
		a := netip.AddrFrom4([4]byte{100, 64, byte(i >> 16), byte(i >> 8)})
		k4[i] = datapathCgKey{Addr: net32(a), Port: hport(uint16(i)), Proto: proto(i >> 16)}
		v4[i] = out(i)
	}
	k6, v6 := make([]datapathCgKey6, n6), make([]datapathCgOut, n6)
	for i := range n6 {
		b := cgnattest.Inside6.Addr().As16()
		b[7], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8)
		k6[i] = key6(cgnat.Key{Addr: netip.AddrFrom16(b), Port: uint16(i), Proto: proto(i)})
		v6[i] = out(i)
	}
	for _, w := range []struct {
		name string
		n    int
		do   func() (int, error)
	}{
		{"cg_table", n4, func() (int, error) {
			for i := range k4 {
				if added, err := d.cgt.add(k4[i], v4[i]); !added || err != nil {
					return i, fmt.Errorf("%+v not added: %v", k4[i], err)
				}
			}
			return len(k4), nil
		}},
		{"cg_mappings6", n6, func() (int, error) { return d.objs.CgMappings6.BatchUpdate(k6, v6, nil) }},
	} {
		if w.n == 0 {
			continue
		}
		if n, err := w.do(); err != nil || n != w.n {
			tb.Fatalf("%s: %d of %d written: %v", w.name, n, w.n, err)
		}
	}
	return d
}

// cgnatMappingsIterate reads the mappings one element at a time, with
// the bpf syscall, into a map: the table's buckets (not its shared
// memory mapping, which the batch read walks), then the hashes, get-next-key
// and lookup, as CGNATMappings did before the batch reads. The
// benchmark's baseline and the reference the batch read is checked
// against.
func cgnatMappingsIterate(d *Datapath) (map[cgnat.Key]cgnat.Out, error) {
	out := map[cgnat.Key]cgnat.Out{}
	var (
		k datapathCgKey
		v datapathCgOut
		i uint32
		b datapathCgBucket
	)
	tb := d.objs.CgTable.Iterate()
	for tb.Next(&i, &b) {
		for _, w := range b.W {
			if w.K&cgWayUsed != 0 {
				k := wordKey(w.K)
				out[cgnat.Key{Addr: cgAddr(k.Addr), Port: hport(k.Port), Proto: k.Proto}] =
					cgnat.Out{Addr: cgAddr(w.O.Addr), Port: hport(w.O.Port), Epoch: w.O.Epoch}
			}
		}
	}
	if err := tb.Err(); err != nil {
		return out, err
	}
	it := d.objs.CgMappings.Iterate()
	for it.Next(&k, &v) {
		out[cgnat.Key{Addr: cgAddr(k.Addr), Port: hport(k.Port), Proto: k.Proto}] =
			cgnat.Out{Addr: cgAddr(v.Addr), Port: hport(v.Port), Epoch: v.Epoch}
	}
	if err := it.Err(); err != nil || !d.cg.NAT64() {
		return out, err
	}
	var k6 datapathCgKey6
	it = d.objs.CgMappings6.Iterate()
	for it.Next(&k6, &v) {
		out[cgnat.Key{Addr: addr6(k6.Addr), Port: hport(k6.Port), Proto: k6.Proto}] =
			cgnat.Out{Addr: cgAddr(v.Addr), Port: hport(v.Port), Epoch: v.Epoch}
	}
	return out, it.Err()
}

// TestCGNATMappingsBatched: the batch reads (CGNATMappings, and
// ReadCGNATMappings into a reused set) find exactly the mappings the
// element-by-element iteration finds, NAT44's (the table's and its
// spill's) and NAT64's, over many batches (20000 and 7000 mappings,
// batches of 4096), on an empty datapath, and again into the same set
// after a third were removed (the set's buffers reused, nothing of the
// earlier read left in it).
func TestCGNATMappingsBatched(t *testing.T) {
	d := cgnatReadFilled(t, 1<<15, 20000, 7000)
	want, err := cgnatMappingsIterate(d)
	if err != nil || len(want) != 27000 {
		t.Fatalf("iteration: %d mappings, %v", len(want), err)
	}
	got, err := d.CGNATMappings()
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("batch read: %d mappings (%v), iteration %d, equal %v", len(got), err, len(want), maps.Equal(got, want))
	}
	var set CGNATMappingSet
	check := func(when string) {
		t.Helper()
		if err := d.ReadCGNATMappings(&set); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		want, _ := cgnatMappingsIterate(d)
		seen := map[cgnat.Key]cgnat.Out{}
		set.Each(func(k cgnat.Key, o cgnat.Out) { seen[k] = o })
		if set.Len() != len(want) || !maps.Equal(seen, want) {
			t.Fatalf("%s: the set holds %d (%d distinct), iteration %d", when, set.Len(), len(seen), len(want))
		}
	}
	check("full")
	// Shrink both hashes, reading as the sweep would, deleting behind.
	n := 0
	set.Each(func(k cgnat.Key, o cgnat.Out) {
		if n++; n%3 != 0 {
			return
		}
		var err error
		if k.Addr.Is6() {
			kk := key6(k)
			err = d.objs.CgMappings6.Delete(&kk)
		} else {
			_, err = d.cgt.remove(datapathCgKey{Addr: net32(k.Addr), Port: hport(k.Port), Proto: k.Proto})
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	check("a third deleted")
	e := cgnatReadFilled(t, 1<<10, 0, 0)
	if err := e.ReadCGNATMappings(&set); err != nil || set.Len() != 0 {
		t.Fatalf("empty datapath: %d mappings, %v", set.Len(), err)
	}
}

// BenchmarkCGNATMappingsRead: reading every mapping as the sweep does,
// 200k and 1M of them (three quarters NAT44, a quarter NAT64): the old
// element-by-element iteration into a map (the baseline), the batch read
// into a map (CGNATMappings), and the batch read into a reused set
// walked with Each (the sweep's way), each read once before the timing
// (the set's buffers grown, as between sweeps). ns/mapping and
// allocs/op give the ratios. `go test -run '^$' -bench CGNATMappingsRead -benchmem ./xdp`
func BenchmarkCGNATMappingsRead(b *testing.B) {
	for _, n := range []int{200_000, 1 << 20} {
		n4, n6 := n*3/4, n/4
		d := cgnatReadFilled(b, 1<<20, n4, n6)
		var set CGNATMappingSet
		for _, c := range []struct {
			name string
			read func() (int, error)
		}{
			{"iterate-map(old)", func() (int, error) { m, err := cgnatMappingsIterate(d); return len(m), err }},
			{"batch-map", func() (int, error) { m, err := d.CGNATMappings(); return len(m), err }},
			{"batch-set", func() (int, error) {
				if err := d.ReadCGNATMappings(&set); err != nil {
					return 0, err
				}
				seen := 0
				set.Each(func(cgnat.Key, cgnat.Out) { seen++ })
				return seen, nil
			}},
		} {
			b.Run(fmt.Sprintf("n=%d/%s", n, c.name), func(b *testing.B) {
				if _, err := c.read(); err != nil { // the set's buffers grown, as between sweeps
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if got, err := c.read(); err != nil || got != n {
						b.Fatalf("%d mappings read of %d: %v", got, n, err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/mapping")
			})
		}
		d.Close()
	}
}

// TestCGNATSlotStates: the slots' states read in batches into a reused
// buffer (ReadCGNATSlotStates, the sweep's read), or one by one
// (CGNATSlotState, a sample), say of every slot what
// CGNATSlots' map says of it, the TCP bits and the on-request flag,
// zero for the slots that hold no mapping (stale TCP bits left in one
// included) and for slots outside the pool; again after the slots
// changed, into the same buffer.
func TestCGNATSlotStates(t *testing.T) {
	d := cgnatReadFilled(t, 1<<10, 0, 0)
	per := d.cg.PoolPorts()
	n := int(d.objs.CgSlots.MaxEntries())
	if n != cgnat.Planes*per || n <= 2*cgBatch {
		t.Fatalf("%d slots for %d planes of %d ports: want several batches", n, cgnat.Planes, per)
	}
	var st CGNATSlotStates
	for round := range 2 {
		keys, vals := make([]uint32, n), make([]datapathCgIn, n)
		for i := range n {
			keys[i] = uint32(i)
			v := datapathCgIn{Addr: net32(netip.AddrFrom4([4]byte{100, 64, 0, byte(i)})), Port: hport(uint16(i)), Tcp: uint8(i + round)}
			if (i+round)%3 != 0 {
				v.Flags = cgUsed
				if (i+round)%5 == 0 {
					v.Flags |= cgExplicit
				}
			}
			vals[i] = v
		}
		if _, err := d.objs.CgSlots.BatchUpdate(keys, vals, nil); err != nil {
			t.Fatal(err)
		}
		want, err := d.CGNATSlots()
		if err != nil {
			t.Fatal(err)
		}
		if err := d.ReadCGNATSlotStates(&st); err != nil {
			t.Fatal(err)
		}
		explicit := 0
		for i := range n {
			sl := cgnat.Slot{Plane: i / per, Off: i % per}
			tcp, ex := st.State(sl)
			w := want[sl]
			if tcp != w.TCP || ex != w.Explicit {
				t.Fatalf("round %d: slot %+v reads tcp %#x explicit %v, CGNATSlots %#x %v", round, sl, tcp, ex, w.TCP, w.Explicit)
			}
			if i%7 == 0 { // one lookup a slot: a sample
				if tcp1, ex1, err := d.CGNATSlotState(sl); err != nil || tcp1 != w.TCP || ex1 != w.Explicit {
					t.Fatalf("round %d: slot %+v looked up alone: tcp %#x explicit %v (%v), CGNATSlots %#x %v", round, sl, tcp1, ex1, err, w.TCP, w.Explicit)
				}
			}
			if ex {
				explicit++
			}
		}
		if explicit == 0 || len(want) == 0 || len(want) == n {
			t.Fatalf("round %d: %d explicit, %d of %d used: the pattern does not test much", round, explicit, len(want), n)
		}
		for _, sl := range []cgnat.Slot{{Plane: 0, Off: per}, {Plane: cgnat.Planes, Off: 1}, {Plane: 0, Off: -1}, {Plane: -1, Off: per + 1}} {
			if tcp, ex := st.State(sl); tcp != 0 || ex {
				t.Fatalf("slot %+v outside the pool reads %#x %v", sl, tcp, ex)
			}
			if _, _, err := d.CGNATSlotState(sl); err == nil {
				t.Fatalf("slot %+v outside the pool looked up alone: no error", sl)
			}
		}
	}
}
