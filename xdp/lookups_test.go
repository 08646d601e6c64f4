package xdp

import (
	"bytes"
	"errors"
	"github.com/unmap-dev/unmap/session/cgnat"
	"net/netip"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// counting is the lookup-counting build of the datapath (the same C with
// -DUNMAP_COUNT_LOOKUPS, lookups_bpfel_test.o) loaded like Load does,
// with the world's tables installed through the same Put.
type counting struct {
	d   *Datapath
	cfg xlat.Config
	n   *ebpf.Variable // unmap_lookups: map lookups since it was last zeroed
}

func loadCounting(tb testing.TB, cfg xlat.Config, opts Options, w *xlattest.Tables) *counting {
	tb.Helper()
	priv.Require(tb)
	spec, err := loadLookups()
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := configure(spec, cfg, opts, nil)
	if err != nil {
		tb.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		tb.Fatalf("load counting build: %v", err)
	}
	d, err := fromCollection(coll, cfg, cgnat.Config{}, ts)
	if err != nil {
		coll.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close(); coll.Close() })
	c := &counting{d: d, cfg: cfg, n: coll.Variables["unmap_lookups"]}
	if c.n == nil {
		tb.Fatal("counting build has no unmap_lookups")
	}
	if w != nil {
		populate(tb, d, w)
	}
	return c
}

// both returns put and delete functions that change an entry in the
// counting build and in the model's tables w alike.
func (c *counting) both(t *testing.T, w *xlattest.Tables) (put func(xlat.Key, xlat.Entry), del func(xlat.Key)) {
	put = func(k xlat.Key, e xlat.Entry) {
		t.Helper()
		if err := c.d.Put(k, e); err != nil {
			t.Fatal(err)
		}
		w.Flows[k] = e
	}
	del = func(k xlat.Key) {
		t.Helper()
		if err := c.d.Delete(k); err != nil {
			t.Fatal(err)
		}
		delete(w.Flows, k)
	}
	return put, del
}

// run runs one packet and returns the model's result for it and the map
// lookups the program made.
func (c *counting) run(tb testing.TB, role xlat.Role, w xlat.Tables, in []byte) (xlat.Result, uint64) {
	tb.Helper()
	want := xlat.Process(role, &c.cfg, w, nil, append([]byte(nil), in...))
	if err := c.n.Set(uint64(0)); err != nil {
		tb.Fatal(err)
	}
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
	ret, err := c.d.Program(role).Run(opts)
	if err != nil {
		tb.Fatal(err)
	}
	if xlat.Verdict(ret) != want.Verdict || !bytes.Equal(opts.DataOut, want.Out) {
		tb.Fatalf("verdict %v, model %v (%v); or bytes differ", xlat.Verdict(ret), want.Verdict, want.Reason)
	}
	var n uint64
	if err := c.n.Get(&n); err != nil {
		tb.Fatal(err)
	}
	return want, n
}

// TestOneLookupPerEstablishedPacket: every packet that takes the
// established path (the model translates it with an entry), among all
// fixtures and 20k random packets, made exactly one map lookup, both for
// carrier keys (the carriers slot) and site-side keys (the flows or flows4 hash).
func TestOneLookupPerEstablishedPacket(t *testing.T) {
	w := xlattest.World()
	edge := loadCounting(t, xlattest.Config(xlattest.EdgeWAN), Options{}, w)
	relay := loadCounting(t, xlattest.Config(xlattest.RelayAddr), Options{}, w)
	byRole := func(r xlat.Role) *counting {
		if r == xlat.RoleRelayExt {
			return relay
		}
		return edge
	}
	slots, hashed := 0, 0
	check := func(name string, role xlat.Role, in []byte) {
		c := byRole(role)
		res, n := c.run(t, role, w, in)
		if !res.Hit {
			return
		}
		if n != 1 {
			t.Errorf("%s (%v): %d map lookups on the established path, want 1", name, role, n)
		}
		if _, ok := c.d.slotIndex(res.Key); ok {
			slots++
		} else {
			hashed++
		}
	}
	for _, f := range xlattest.Fixtures() {
		check(f.Name, f.Role, f.In)
	}
	gen := xlattest.NewGen(w, 7)
	for i := range 20_000 {
		role, in := gen.Packet()
		check("random packet "+strconv.Itoa(i), role, in)
	}
	// Both kinds of lookup were exercised, or the test proves nothing.
	if slots < 10 || hashed < 10 {
		t.Fatalf("established packets: %d by carrier slot, %d by hash; want both", slots, hashed)
	}
	t.Logf("established packets: %d by carrier slot, %d by hash, one lookup each", slots, hashed)
}

// TestSpilledCarriers: at the relay, R is unique only per CGNAT public
// address, so two carriers can share a slot. The second lives in the
// flows4 hash (two lookups, counted: the counter can fail the test above);
// both translate as the model does, a foreign far end on the same port
// uses neither, and Put, Delete and FlowCounters keep a key in exactly
// one place.
func TestSpilledCarriers(t *testing.T) {
	cfg := xlattest.Config(xlattest.RelayAddr)
	c := loadCounting(t, cfg, Options{}, nil)
	if err := c.d.SetFIB(false); err != nil {
		t.Fatal(err)
	}
	w := &xlattest.Tables{Flows: map[xlat.Key]xlat.Entry{}}
	pub2 := netip.MustParseAddr("198.51.100.8")
	key := func(pub netip.Addr, port uint16) xlat.Key {
		return xlat.Key{Proto: 17, Src: pub, SPort: port, Dst: xlattest.RelayAddr, DPort: 30000}
	}
	entry := func(sitePort uint16) xlat.Entry {
		return xlat.Entry{Action: xlat.ActXlat46, Proto: 17, Src: xlattest.Remote6, SPort: 443, Dst: xlattest.SiteHost, DPort: sitePort}
	}
	pkt := func(k xlat.Key) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: k.Src, SPort: k.SPort, Dst: k.Dst, DPort: k.DPort, TTL: 64, Payload: []byte("spill")})
	}
	put, del := c.both(t, w)
	// A miss adds five lookups: whether its source is a site's or the
	// relay's own (martian.h, before the agent), the exemptions of its
	// source (a carrier miss), its source's rate bucket (miss.h) and its
	// reason counter.
	expect := func(what string, k xlat.Key, hit bool, lookups uint64) {
		t.Helper()
		if !hit {
			lookups += 5
		}
		res, n := c.run(t, xlat.RoleRelayExt, w, pkt(k))
		if res.Hit != hit || n != lookups {
			t.Errorf("%s: hit %v after %d lookups, want %v after %d", what, res.Hit, n, hit, lookups)
		}
	}
	k1, k2, foreign := key(xlattest.CGNATPub, 20001), key(pub2, 20001), key(xlattest.CGNATPub, 20002)
	put(k1, entry(40000))
	expect("slot owner", k1, true, 1)
	expect("foreign far end, no spill", foreign, false, 1)
	put(k2, entry(40001))
	expect("slot owner", k1, true, 1)
	expect("spilled", k2, true, 2)
	expect("foreign far end", foreign, false, 2)
	for _, k := range []xlat.Key{k1, k2} {
		if err := c.d.PutPair(Mapping{k, entry(1)}, Mapping{key(xlattest.CGNATPub, 9), entry(2)}); !errors.Is(err, ebpf.ErrKeyExist) {
			t.Errorf("PutPair over %v: %v, want ErrKeyExist", k, err)
		}
	}
	for k, want := range map[xlat.Key]uint64{k1: 2, k2: 1} {
		if n, err := c.d.FlowCounters(k); err != nil || n.Packets != want {
			t.Errorf("counters of %v: %+v, %v; want %d packets", k, n, err, want)
		}
	}
	del(k1)
	expect("deleted owner", k1, false, 2)
	expect("spilled, owner gone", k2, true, 2)
	put(k1, entry(40002)) // back into the free slot, not into flows
	expect("slot owner again", k1, true, 1)
	put(k2, entry(40003)) // replaced where it lives
	expect("spilled, replaced", k2, true, 2)
	del(k2)
	expect("spilled, deleted", k2, false, 2)
	if err := c.d.Delete(k2); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("second delete: %v, want ErrKeyNotExist", err)
	}
	if _, err := c.d.FlowCounters(k2); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("counters of a deleted key: %v, want ErrKeyNotExist", err)
	}
}
