package cgnat

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/xdp"
)

// fakeDP is the datapath's records as the agent sees them: subscribers'
// blocks and spent flags, the blocks' taken counts, mappings and slots.
type fakeDP struct {
	c        *cgnat.Config
	subs     map[netip.Addr]*xdp.CGNATGrant
	used     map[uint32][cgnat.Planes]uint32
	maps     map[cgnat.Key]cgnat.Out
	slots    map[cgnat.Slot]cgnat.In
	epoch    uint16
	released []cgnat.Key
}

func newFake(c *cgnat.Config) *fakeDP {
	return &fakeDP{c: c, subs: map[netip.Addr]*xdp.CGNATGrant{}, used: map[uint32][cgnat.Planes]uint32{},
		maps: map[cgnat.Key]cgnat.Out{}, slots: map[cgnat.Slot]cgnat.In{}}
}

func (f *fakeDP) sub(a netip.Addr) *xdp.CGNATGrant {
	if f.subs[a] == nil {
		f.subs[a] = &xdp.CGNATGrant{}
	}
	return f.subs[a]
}
func (f *fakeDP) GrantBlock(sub netip.Addr, id uint32) error {
	f.sub(sub).Blocks = append(f.sub(sub).Blocks, id)
	return nil
}
func (f *fakeDP) WithdrawBlock(sub netip.Addr, id uint32) error {
	g := f.sub(sub)
	for i, b := range g.Blocks {
		if b == id {
			g.Blocks = append(g.Blocks[:i:i], g.Blocks[i+1:]...)
		}
	}
	return nil
}
func (f *fakeDP) SetSpent(sub netip.Addr, spent bool) error { f.sub(sub).Spent = spent; return nil }
func (f *fakeDP) GrantDeterministic(m cgnat.Deterministic) error {
	for i := range m.Config.Subscribers() {
		sub := addAddr(m.Config.Inside.Addr(), i)
		ids, _ := m.Blocks(sub)
		*f.sub(sub) = xdp.CGNATGrant{Blocks: ids, Spent: true}
	}
	return nil
}
func (f *fakeDP) CGNATGrants() (map[netip.Addr]xdp.CGNATGrant, error) {
	out := map[netip.Addr]xdp.CGNATGrant{}
	for a, g := range f.subs {
		if len(g.Blocks) > 0 || g.Spent {
			out[a] = *g
		}
	}
	return out, nil
}
func (f *fakeDP) CGNATBlockUsed(id uint32) ([cgnat.Planes]uint32, error) { return f.used[id], nil }
func (f *fakeDP) CGNATMappings() (map[cgnat.Key]cgnat.Out, error)        { return f.maps, nil }
func (f *fakeDP) CGNATSlots() (map[cgnat.Slot]cgnat.In, error)           { return f.slots, nil }
func (f *fakeDP) SetCGNATEpoch(e uint16) error                           { f.epoch = e; return nil }

// ReleaseMapping gives the mapping's port back as the datapath does.
func (f *fakeDP) ReleaseMapping(k cgnat.Key) error {
	o := f.maps[k]
	delete(f.maps, k)
	off, _ := f.c.PoolPort(o.Addr, o.Port)
	id := uint32(off >> f.c.BlockBits)
	u := f.used[id]
	u[map[uint8]int{6: 0, 17: 1, 1: 2}[k.Proto]]--
	f.used[id] = u
	f.released = append(f.released, k)
	return nil
}

// mapping makes a mapping on sub's first block as the datapath would,
// stamped with the current epoch.
func (f *fakeDP) mapping(t *testing.T, sub netip.Addr, port uint16, proto uint8, tcp uint8) cgnat.Key {
	t.Helper()
	g := f.subs[sub]
	if g == nil || len(g.Blocks) == 0 {
		t.Fatalf("%v holds no block", sub)
	}
	id := g.Blocks[0]
	addr, base := f.c.BlockAt(id)
	pl := map[uint8]int{6: 0, 17: 1, 1: 2}[proto]
	u := f.used[id]
	pub := base + uint16(u[pl])
	u[pl]++
	f.used[id] = u
	k := cgnat.Key{Addr: sub, Port: port, Proto: proto}
	f.maps[k] = cgnat.Out{Addr: addr, Port: pub, Epoch: f.epoch}
	off, _ := f.c.PoolPort(addr, pub)
	f.slots[cgnat.Slot{Plane: pl, Off: off}] = cgnat.In{Addr: sub, Port: port, TCP: tcp}
	return k
}

func testSettings(t *testing.T, det bool) *Settings {
	t.Helper()
	inside := "100.64.0.0/24"
	if det {
		inside = "100.64.0.0/28" // 16 subscribers x 2 blocks: the pool's 32
	}
	c := Config{Interface: "sub0", Inside: inside, Pool: "192.0.2.8/30", Ports: "40960-45055",
		BlockSize: 512, BlocksPerSubscriber: 2, Deterministic: det}
	if !det {
		c.Log = filepath.Join(t.TempDir(), "blocks.log")
	}
	s, err := c.Parse("cgnat", Relay{Interface: "ext0"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time             { return c.t }
func (c *clock) step(d time.Duration)       { c.t = c.t.Add(d) }
func readLog(t *testing.T, p string) string { b, _ := os.ReadFile(p); return string(b) }

var subA, subB = netip.MustParseAddr("100.64.0.5"), netip.MustParseAddr("100.64.0.6")

// TestAgentGrants: a subscriber's first flow gets it a block (logged
// before the datapath has it), a warn event about its last block the
// next, an event about an older block nothing; at its quota with no
// free port it is spent, and a mapping's expiry makes it unspent.
func TestAgentGrants(t *testing.T) {
	s := testSettings(t, false)
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	dp := newFake(&s.Datapath)
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	a, err := NewAgent(s, dp, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.NoBlock(subA); err != nil {
		t.Fatal(err)
	}
	first := dp.subs[subA].Blocks
	if len(first) != 1 || strings.Count(readLog(t, s.Log), `"event":"grant"`) != 1 {
		t.Fatalf("first sight: blocks %v, log %q", first, readLog(t, s.Log))
	}
	k := dp.mapping(t, subA, 5000, 17, 0)
	if err := a.Event(cgnat.Event{Sub: subA, Block: first[0], Used: 384, Plane: 1}); err != nil {
		t.Fatal(err)
	}
	if err := a.Event(cgnat.Event{Sub: subA, Block: first[0], Used: 384, Plane: 0}); err != nil {
		t.Fatal(err)
	}
	if n := len(dp.subs[subA].Blocks); n != 2 {
		t.Fatalf("after two warn events of one block: %d blocks, want 2", n)
	}
	if err := a.NoBlock(subA); err != nil {
		t.Fatal(err)
	}
	if !dp.subs[subA].Spent || a.M.Sum(fRefused) != 1 || len(dp.subs[subA].Blocks) != 2 {
		t.Fatalf("at quota: %+v, spent %d", *dp.subs[subA], a.M.Sum(fRefused))
	}
	clk.step(2*time.Minute + 2*EpochLength)
	if err := a.Sweep(); err != nil {
		t.Fatal(err)
	}
	if len(dp.released) != 1 || dp.released[0] != k || dp.subs[subA].Spent {
		t.Fatalf("after the UDP timeout: released %v, spent %v", dp.released, dp.subs[subA].Spent)
	}
	if st := a.Status(); st["grants"] != 2 || st["spent"] != 1 || st["expired"] != 1 || st["subscribers"] != 1 || st["spent_now"] != 0 {
		t.Fatalf("status %v", st)
	}
}

// TestAgentNoPortBurst: a burst of a new subscriber's first packets
// (each a cgnat-no-block miss queued before the first grant) costs one
// block: a miss for a protocol with a free port in the subscriber's
// blocks grants nothing; one whose protocol's ports are all taken gets
// the next block; at the quota the subscriber is refused (quota).
func TestAgentNoPortBurst(t *testing.T) {
	s := testSettings(t, false)
	dp := newFake(&s.Datapath)
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	a, err := NewAgent(s, dp, blog, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := a.NoPort(subA, 17); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(dp.subs[subA].Blocks); n != 1 || a.M.Get(mGranted) != 1 {
		t.Fatalf("a burst of five first packets: %d blocks", n)
	}
	id := dp.subs[subA].Blocks[0]
	dp.used[id] = [cgnat.Planes]uint32{1: 512} // UDP full, TCP free
	if err := a.NoPort(subA, 6); err != nil || len(dp.subs[subA].Blocks) != 1 {
		t.Fatalf("TCP with free TCP ports: %v, %d blocks", err, len(dp.subs[subA].Blocks))
	}
	if err := a.NoPort(subA, 17); err != nil || len(dp.subs[subA].Blocks) != 2 {
		t.Fatalf("UDP with every UDP port taken: %v, %d blocks", err, len(dp.subs[subA].Blocks))
	}
	dp.used[dp.subs[subA].Blocks[1]] = [cgnat.Planes]uint32{1: 512}
	if err := a.NoPort(subA, 17); err != nil || !dp.subs[subA].Spent || a.M.Get(mRefusedQuota) != 1 {
		t.Fatalf("at the quota: %v, spent %v, %v", err, dp.subs[subA].Spent, a.M.Snapshot())
	}
}

// TestAgentTimeouts: each protocol and TCP state expires after its own
// idle time, not before; an outbound packet (a new epoch stamped) keeps
// a mapping.
func TestAgentTimeouts(t *testing.T) {
	s := testSettings(t, false)
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	dp := newFake(&s.Datapath)
	blog, _ := OpenLog(s.Log)
	defer blog.Close()
	a, err := NewAgent(s, dp, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.NoBlock(subA); err != nil {
		t.Fatal(err)
	}
	udp := dp.mapping(t, subA, 1, 17, 0)
	icmp := dp.mapping(t, subA, 2, 1, 0)
	est := dp.mapping(t, subA, 3, 6, cgnat.TCPSynOut|cgnat.TCPSynIn)
	half := dp.mapping(t, subA, 4, 6, cgnat.TCPSynOut)
	closed := dp.mapping(t, subA, 5, 6, cgnat.TCPSynOut|cgnat.TCPSynIn|cgnat.TCPFinOut|cgnat.TCPFinIn)
	kept := dp.mapping(t, subA, 6, 17, 0)
	gone := func() map[cgnat.Key]bool {
		m := map[cgnat.Key]bool{}
		for _, k := range dp.released {
			m[k] = true
		}
		return m
	}
	for _, step := range []struct {
		after time.Duration
		gone  []cgnat.Key
	}{
		{50 * time.Second, nil},
		{30 * time.Second, []cgnat.Key{icmp}},
		{60 * time.Second, []cgnat.Key{icmp, udp}},
		{3 * time.Minute, []cgnat.Key{icmp, udp, half, closed}},
		{2 * time.Hour, []cgnat.Key{icmp, udp, half, closed, est}},
	} {
		clk.step(step.after)
		// the kept mapping sends every sweep
		dp.epoch = Epoch(clk.now())
		o := dp.maps[kept]
		o.Epoch = dp.epoch
		dp.maps[kept] = o
		if err := a.Sweep(); err != nil {
			t.Fatal(err)
		}
		g := gone()
		if len(g) != len(step.gone) || g[kept] {
			t.Fatalf("after %v more: released %v, want %v", step.after, dp.released, step.gone)
		}
		for _, k := range step.gone {
			if !g[k] {
				t.Fatalf("after %v more: %+v not released (%v)", step.after, k, dp.released)
			}
		}
	}
}

// TestAgentReturnsEmptyBlocks: a block empty for the grace time is taken
// out of the subscriber's record, then returned with a release record at
// the next sweep; one that a late packet used meanwhile stays until empty.
func TestAgentReturnsEmptyBlocks(t *testing.T) {
	s := testSettings(t, false)
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	dp := newFake(&s.Datapath)
	blog, _ := OpenLog(s.Log)
	defer blog.Close()
	a, err := NewAgent(s, dp, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []netip.Addr{subA, subB} {
		if err := a.NoBlock(sub); err != nil {
			t.Fatal(err)
		}
	}
	k := dp.mapping(t, subB, 7, 17, 0) // B keeps a mapping, sending every sweep
	sweep := func() {
		t.Helper()
		dp.epoch = Epoch(clk.now())
		o := dp.maps[k]
		o.Epoch = dp.epoch
		dp.maps[k] = o
		if err := a.Sweep(); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		sweep()
		clk.step(time.Minute)
	}
	// A's block: empty since the first sweep, withdrawn at the grace's end.
	if len(dp.subs[subA].Blocks) != 0 || len(a.Held(subA)) != 1 {
		t.Fatalf("A: datapath %v, book %v", dp.subs[subA].Blocks, a.Held(subA))
	}
	sweep()
	if len(a.Held(subA)) != 0 || strings.Count(readLog(t, s.Log), `"event":"release"`) != 1 {
		t.Fatalf("A not released: book %v, log\n%s", a.Held(subA), readLog(t, s.Log))
	}
	if len(a.Held(subB)) != 1 || dp.maps[k] == (cgnat.Out{}) {
		t.Fatal("B's block with a live mapping was taken back")
	}
	// A withdrawn block a CPU still took a port of stays until empty.
	if err := a.NoBlock(subA); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clk.step(time.Minute)
		sweep()
	}
	id := a.Held(subA)[0]
	dp.subs[subA].Blocks = []uint32{id} // the race: as if read before the withdrawal
	late := dp.mapping(t, subA, 9, 17, 0)
	dp.subs[subA].Blocks = nil
	sweep()
	if len(a.Held(subA)) != 1 {
		t.Fatal("a block with a port taken during its withdrawal went back to the pool")
	}
	clk.step(3 * time.Minute)
	sweep() // the late mapping expires, its block reads empty
	clk.step(3 * time.Minute)
	sweep()
	clk.step(time.Minute)
	sweep()
	if _, ok := dp.maps[late]; ok || len(a.Held(subA)) != 0 {
		t.Fatalf("after the late mapping expired: book %v", a.Held(subA))
	}
}

// TestAgentRestartRestores: a new agent on the same datapath takes its
// book from the subscribers' records: nothing granted twice, the spent
// flag kept.
func TestAgentRestartRestores(t *testing.T) {
	s := testSettings(t, false)
	dp := newFake(&s.Datapath)
	blog, _ := OpenLog(s.Log)
	defer blog.Close()
	a, _ := NewAgent(s, dp, blog, nil, nil)
	for _, sub := range []netip.Addr{subA, subA, subB} {
		if err := a.NoBlock(sub); err != nil {
			t.Fatal(err)
		}
	}
	b, err := NewAgent(s, dp, blog, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.NoBlock(netip.MustParseAddr("100.64.0.7")); err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]netip.Addr{}
	for sub, g := range dp.subs {
		for _, id := range g.Blocks {
			if o, ok := seen[id]; ok {
				t.Fatalf("block %d granted to %v and %v", id, o, sub)
			}
			seen[id] = sub
		}
	}
	if len(seen) != 4 || len(b.Held(subA)) != 2 {
		t.Fatalf("blocks %v, A's in the new book %v", seen, b.Held(subA))
	}
}

// TestLookup: the log answers who held a public address:port at a time
// (granted, released, granted to another); deterministic mode answers
// from the formula.
func TestLookup(t *testing.T) {
	s := testSettings(t, false)
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	dp := newFake(&s.Datapath)
	blog, _ := OpenLog(s.Log)
	a, _ := NewAgent(s, dp, blog, nil, clk.now)
	if err := a.NoBlock(subA); err != nil {
		t.Fatal(err)
	}
	t0 := clk.now()
	pub, first := s.Datapath.BlockAt(dp.subs[subA].Blocks[0])
	for range 4 {
		clk.step(time.Minute)
		if err := a.Sweep(); err != nil {
			t.Fatal(err)
		}
	}
	t1 := clk.now()
	clk.step(time.Hour) // past the rest
	if err := a.NoBlock(subB); err != nil {
		t.Fatal(err)
	}
	blog.Close()
	data := readLog(t, s.Log)
	pubB, firstB := s.Datapath.BlockAt(dp.subs[subB].Blocks[0])
	for _, c := range []struct {
		at   time.Time
		addr netip.Addr
		port uint16
		want netip.Addr
	}{
		{t0.Add(-time.Second), pub, first + 100, netip.Addr{}},
		{t0.Add(time.Second), pub, first + 100, subA},
		{t1.Add(time.Second), pub, first + 100, netip.Addr{}},
		{clk.now(), pubB, firstB + 511, subB},
	} {
		ans, ok, err := LookupLog(strings.NewReader(data), c.addr, c.port, c.at)
		if err != nil {
			t.Fatal(err)
		}
		if ok != c.want.IsValid() || ans.Subscriber != c.want {
			t.Errorf("at %v: %v %v, want %v\n%s", c.at, ans.Subscriber, ok, c.want, data)
		}
	}
	if _, ok, _ := LookupLog(strings.NewReader(data), pub, first-1, clk.now()); ok {
		t.Error("a port outside every block has a holder")
	}
	d := testSettings(t, true)
	ddp := newFake(&d.Datapath)
	if _, err := NewAgent(d, ddp, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	for sub, g := range ddp.subs {
		addr, base := d.Datapath.BlockAt(g.Blocks[len(g.Blocks)-1])
		if ans, ok := LookupDeterministic(d, addr, base+511); !ok || ans.Subscriber != sub {
			t.Fatalf("%v:%d: %v, want %v", addr, base+511, ans.Subscriber, sub)
		}
	}
}

// TestBlockLogReopen: after the file is moved away (rotation), Reopen
// writes to a new file at the path; nothing is lost.
func TestBlockLogReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.log")
	l, err := OpenLog(p)
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Event: EventGrant, Subscriber: subA, Address: netip.MustParseAddr("192.0.2.8"), PortFirst: 1024, PortLast: 1535, Protocol: BlockProtocols}
	if err := l.Write(r); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(r); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(r); err != nil {
		t.Fatal(err)
	}
	l.Close()
	old, _ := os.ReadFile(p + ".1")
	cur, _ := os.ReadFile(p)
	if bytes.Count(old, []byte("\n")) != 2 || bytes.Count(cur, []byte("\n")) != 1 {
		t.Fatalf("rotated %q, new %q", old, cur)
	}
}
