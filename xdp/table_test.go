package xdp

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestFlowTableSpill: with a table of one bucket, the first four keys take
// its ways (one lookup) and the rest spill to the hash (two lookups, and
// a miss asks the hash too while the bucket is marked). A way emptied by
// a delete is not reused until its quarantine is over; the mark goes when
// the last spilled key does. Every packet translates as the model does.
func TestFlowTableSpill(t *testing.T) {
	cfg := xlattest.Config(xlattest.RelayAddr)
	c := loadCounting(t, cfg, Options{Buckets: 1}, nil)
	if err := c.d.SetFIB(false); err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1e9, 0)
	c.d.tab.now = func() time.Time { return clock }
	w := &xlattest.Tables{Flows: map[xlat.Key]xlat.Entry{}}
	key := func(i uint16) xlat.Key {
		return xlat.Key{Proto: 6, Src: xlattest.Remote6, SPort: 1000 + i, Dst: xlattest.SiteHost, DPort: 40000}
	}
	entry := func(r uint16) xlat.Entry {
		return xlat.Entry{Action: xlat.ActXlat64, Proto: 6, Src: xlattest.RelayAddr, SPort: r, Dst: xlattest.CGNATPub, DPort: 20000}
	}
	put, del := c.both(t, w)
	run := func(k xlat.Key) (bool, uint64) {
		t.Helper()
		in := xlattest.Build(xlattest.Spec{Proto: 6, Src: k.Src, SPort: k.SPort, Dst: k.Dst, DPort: k.DPort, TTL: 64, Payload: []byte("table")})
		res, n := c.run(t, xlat.RoleRelayExt, w, in)
		return res.Hit, n
	}
	expect := func(what string, k xlat.Key, lookups uint64) {
		t.Helper()
		if hit, n := run(k); !hit || n != lookups {
			t.Errorf("%s: hit %v after %d lookups, want a hit after %d", what, hit, n, lookups)
		}
	}
	foreign := key(999)
	_, missBase := run(foreign) // what a miss costs with no spill
	for i := range uint16(6) {
		put(key(i), entry(30000+i))
	}
	for i := range uint16(4) {
		expect("in a way", key(i), 1)
	}
	expect("spilled", key(4), 2)
	expect("spilled", key(5), 2)
	if hit, n := run(foreign); hit || n != missBase+1 {
		t.Errorf("miss in a spilled bucket: hit %v after %d lookups, want a miss after %d", hit, n, missBase+1)
	}
	for _, k := range []xlat.Key{key(0), key(5)} {
		if err := c.d.PutPair(Mapping{k, entry(1)}, Mapping{key(100), entry(2)}); !errors.Is(err, ebpf.ErrKeyExist) {
			t.Errorf("PutPair over %v: %v, want ErrKeyExist", k, err)
		}
	}
	for k, want := range map[xlat.Key]uint64{key(0): 1, key(5): 1} {
		if n, err := c.d.FlowCounters(k); err != nil || n.Packets != want {
			t.Errorf("counters of %v: %+v, %v; want %d packets", k, n, err, want)
		}
	}
	put(key(1), entry(31001)) // replaced in its way, counters zeroed
	expect("replaced in its way", key(1), 1)
	if n, err := c.d.FlowCounters(key(1)); err != nil || n.Packets != 1 {
		t.Errorf("counters after replacing: %+v, %v; want 1 packet", n, err)
	}

	del(key(0))
	if hit, _ := run(key(0)); hit {
		t.Error("deleted key still translated")
	}
	put(key(6), entry(30006)) // the freed way is in quarantine
	expect("spilled while a way is in quarantine", key(6), 2)
	clock = clock.Add(wayQuarantine)
	put(key(7), entry(30007))
	expect("in the way freed a quarantine ago", key(7), 1)

	got, err := c.d.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(w.Flows) {
		t.Errorf("Mappings: %d, want %d", len(got), len(w.Flows))
	}
	for k, e := range w.Flows {
		if !slices.Contains(got, Mapping{k, e}) {
			t.Errorf("Mappings lacks %v", k)
		}
	}

	for _, i := range []uint16{4, 5, 6} {
		del(key(i))
	}
	if len(c.d.tab.spilled) != 0 {
		t.Errorf("spill counts after the last spilled key went: %v", c.d.tab.spilled)
	}
	if hit, n := run(foreign); hit || n != missBase {
		t.Errorf("miss after the spill went: hit %v after %d lookups, want a miss after %d", hit, n, missBase)
	}
	if err := c.d.Delete(key(4)); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("second delete: %v, want ErrKeyNotExist", err)
	}
	if _, err := c.d.FlowCounters(key(4)); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("counters of a deleted key: %v, want ErrKeyNotExist", err)
	}
}

// TestFlowTableSpreads: the seeded hash spreads keys that differ in one
// field only (what a busy host's flows look like) over the buckets: 4096
// of them in 16384 buckets (a table a sixteenth full) use at least half
// as many buckets and spill none. Fixed seeds, so the test is
// deterministic. (A first hash, one fixed multiplier after an XOR with
// the seed, put keys that differed in an address's last bytes into 16
// buckets.)
func TestFlowTableSpreads(t *testing.T) {
	for s := range uint64(4) {
		rng := rand.New(rand.NewPCG(s, 99))
		var seed tableSeed
		for i := range seed {
			seed[i] = rng.Uint64() | 1
		}
		for _, vary := range []string{"source port", "remote address"} {
			load := map[uint32]int{}
			for i := range 4096 {
				k := xlat.Key{Proto: 6, Src: xlattest.SiteHost, SPort: 40000, Dst: xlattest.Remote6, DPort: 443}
				if vary == "source port" {
					k.SPort = uint16(1024 + i)
				} else {
					b := k.Dst.As16()
					b[14], b[15] = byte(i>>8), byte(i)
					k.Dst = netip.AddrFrom16(b)
				}
				kb, err := k.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				load[tableHash(seed, 14, kb)]++ // 16384 buckets
			}
			most := 0
			for _, n := range load {
				most = max(most, n)
			}
			if len(load) < 2048 || most > flowWays {
				t.Errorf("seed %d, varying the %s: %d buckets used (want >= 2048), at most %d keys in one (want <= %d)", s, vary, len(load), most, flowWays)
			}
			t.Logf("seed %d, varying the %s: %d buckets, at most %d keys in one", s, vary, len(load), most)
		}
	}
}

// TestFlowTableSpread: the flow table's hash spreads keys as regular as
// one LAN host's 12000 connections to one remote from consecutive ports
// (IPv4 TCP, only the source port varies) over 8192 buckets of four
// ways as random placement would, for every one of 200 random seeds:
// ~215 keys over a full bucket at most. The first table_bucket (the
// top bits of the multiply-shift sum, unmixed) left up to 8800 for one
// seed in six, every one of them a spill-hash lookup.
func TestFlowTableSpread(t *testing.T) {
	const bits = 13
	worst := worstOverflow(t, bits, flowWays, 12000, func(seed tableSeed, i int) uint32 {
		kb := make([]byte, 40)
		kb[0], kb[1] = 4, 6
		binary.BigEndian.PutUint16(kb[2:], uint16(10000+i))
		binary.BigEndian.PutUint16(kb[4:], 443)
		copy(kb[8:], []byte{192, 168, 1, 10})
		copy(kb[24:], []byte{203, 0, 113, 7})
		return tableHash(seed, bits, kb)
	})
	t.Logf("at most %d of 12000 keys over a full bucket", worst)
	if worst > 400 {
		t.Errorf("a seed left %d of 12000 keys over a full bucket", worst)
	}
}

// worstOverflow puts n keys (bucket: key i's bucket under a seed) in
// 2^bits buckets of ways ways, for each of 200 random seeds, and returns
// the most keys a seed left over a full bucket.
func worstOverflow(t *testing.T, bits, ways, n int, bucket func(seed tableSeed, i int) uint32) int {
	t.Helper()
	worst := 0
	for range 200 {
		seed, err := newSeed()
		if err != nil {
			t.Fatal(err)
		}
		fill := make([]int, 1<<bits)
		over := 0
		for i := range n {
			if b := bucket(seed, i); fill[b] == ways {
				over++
			} else {
				fill[b]++
			}
		}
		worst = max(worst, over)
	}
	return worst
}
