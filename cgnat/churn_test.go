package cgnat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
	"github.com/unmap-dev/unmap/xdp"
)

// TestChurnOnDatapath runs the agent against the real datapath (loaded,
// programs run with BPF_PROG_RUN): 16 subscribers make 600 UDP mappings
// each, every subscriber's first packet and the one that fills its first
// block going to the agent (cgnat-no-block) for a grant; then the clock
// passes the UDP timeout and the grace: every mapping expires, every
// block is withdrawn and returned, and the maps, the blocks' bits and
// counts, the subscribers' records and the agent's book are empty again;
// the log holds each grant before its release.
func TestChurnOnDatapath(t *testing.T) {
	priv.Require(t)
	s := testSettings(t, false)
	d, err := xdp.Load(xlattest.Config(xlattest.RelayAddr), xdp.Options{CGNAT: s.Datapath, CGNATMappings: 1 << 14, NoMissLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	a, err := NewAgent(s, d, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	prog := d.Program(xlat.RoleRelaySub)
	run := func(pkt []byte) xlat.Verdict {
		ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, DataOut: make([]byte, len(pkt)+64)})
		if err != nil {
			t.Fatal(err)
		}
		return xlat.Verdict(ret)
	}
	const subs, flows = 16, 600 // two blocks each: the whole pool
	toAgent := 0
	for i := range subs {
		sub := netip.AddrFrom4([4]byte{100, 64, 0, byte(10 + i)})
		for j := range flows {
			pkt := xlattest.Build(xlattest.Spec{Proto: 17, Src: sub, SPort: uint16(10000 + j), Dst: xlattest.Remote4, DPort: 53, Payload: []byte("x")})
			if run(pkt) == xlat.Pass {
				continue
			}
			toAgent++
			if err := a.NoBlock(sub); err != nil {
				t.Fatal(err)
			}
			if v := run(pkt); v != xlat.Pass {
				t.Fatalf("sub %v flow %d after a grant: %v", sub, j, v)
			}
		}
	}
	m, err := d.CGNATMappings()
	if err != nil || len(m) != subs*flows || toAgent != 2*subs {
		t.Fatalf("%d mappings (%v), %d packets to the agent; want %d and %d", len(m), err, toAgent, subs*flows, 2*subs)
	}
	for range 40 { // 8 min of sweeps: the UDP timeout, the grace, the withdrawal
		clk.step(EpochLength + 2*time.Second)
		if err := a.Sweep(); err != nil {
			t.Fatal(err)
		}
	}
	m, _ = d.CGNATMappings()
	slots, _ := d.CGNATSlots()
	grants, _ := d.CGNATGrants()
	if len(m) != 0 || len(slots) != 0 || len(grants) != 0 || len(a.Held(netip.AddrFrom4([4]byte{100, 64, 0, 10}))) != 0 {
		t.Fatalf("after expiry: %d mappings, %d slots, %d subscriber records left", len(m), len(slots), len(grants))
	}
	for id := range uint32(s.Datapath.NumBlocks()) {
		if used, err := d.CGNATBlockUsed(id); err != nil || used != [cgnat.Planes]uint32{} {
			t.Fatalf("block %d after expiry: %v %v", id, used, err)
		}
	}
	st := a.Status()
	if st["grants"] != 2*subs || st["releases"] != 2*subs || st["expired"] != subs*flows || st["subscribers"] != 0 {
		t.Fatalf("status %v", st)
	}
	b, _ := os.ReadFile(s.Log)
	granted := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint(r.Subscriber, r.Address, r.PortFirst)
		switch r.Event {
		case EventGrant:
			granted[key] = true
		case EventRelease:
			if !granted[key] {
				t.Fatalf("release before its grant: %s", line)
			}
			delete(granted, key)
		}
	}
	if len(granted) != 0 {
		t.Fatalf("grants never released: %v", granted)
	}
	// The pool is whole again: past the rest, a new subscriber gets a block.
	clk.step(s.Grace)
	if err := a.NoBlock(netip.MustParseAddr("100.64.0.200")); err != nil || st["grants"]+1 != a.Status()["grants"] {
		t.Fatalf("a grant after the churn: %v", err)
	}
}

// TestChurn200k: 200k UDP mappings made by the real datapath (BPF_PROG_RUN)
// and expired by the agent, in five rounds of 40k (50 subscribers x 800
// flows, two blocks each, most of the pool): after each round every
// mapping, inbound slot, subscriber record and block count of the
// datapath is gone, the agent's book (blocks held, spent, empty and
// withdrawn blocks) is empty, and blocks come back to later rounds; at
// the end the process's heap is within 4 MiB of where it was after the
// first round (nothing grows with the mappings churned), and the block
// log holds every grant and every release, each block's records
// alternating grant, release, grant, ... in time order.
func TestChurn200k(t *testing.T) {
	priv.Require(t)
	const subs, flows = 50, 800
	rounds := 5
	if testing.Short() {
		rounds = 1
	}
	c := Config{Interface: "sub0", Inside: "100.64.0.0/24", Pool: "192.0.2.16/28", Ports: "40960-45055",
		BlockSize: 512, BlocksPerSubscriber: 2, Log: filepath.Join(t.TempDir(), "blocks.log")}
	s, err := c.Parse("cgnat", Relay{Interface: "ext0"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := xdp.Load(xlattest.Config(xlattest.RelayAddr), xdp.Options{CGNAT: s.Datapath, CGNATMappings: 1 << 16, NoMissLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	a, err := NewAgent(s, d, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	prog := d.Program(xlat.RoleRelaySub)
	out := make([]byte, 256)
	run := func(pkt []byte) xlat.Verdict {
		ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		return xlat.Verdict(ret)
	}
	var heap0 uint64
	made := 0
	for round := range rounds {
		for i := range subs {
			sub := netip.AddrFrom4([4]byte{100, 64, 0, byte(10 + i)})
			for j := range flows {
				pkt := xlattest.Build(xlattest.Spec{Proto: 17, Src: sub, SPort: uint16(10000 + j), Dst: xlattest.Remote4, DPort: 53, Payload: []byte("x")})
				if run(pkt) == xlat.Pass {
					made++
					continue
				}
				if err := a.NoPort(sub, 17); err != nil {
					t.Fatal(err)
				}
				if v := run(pkt); v != xlat.Pass {
					t.Fatalf("round %d: sub %v flow %d after a grant: %v", round, sub, j, v)
				}
				made++
			}
		}
		if m, err := d.CGNATMappings(); err != nil || len(m) != subs*flows {
			t.Fatalf("round %d: %d mappings (%v), want %d", round, len(m), err, subs*flows)
		}
		// Sweeps past the UDP timeout (all expire, the blocks read empty),
		// the grace (withdrawn), the next (returned), one more (nothing).
		for range 4 {
			clk.step(s.Grace + EpochLength)
			if err := a.Sweep(); err != nil {
				t.Fatal(err)
			}
		}
		m, _ := d.CGNATMappings()
		slots, _ := d.CGNATSlots()
		grants, _ := d.CGNATGrants()
		if len(m) != 0 || len(slots) != 0 || len(grants) != 0 {
			t.Fatalf("round %d expired: %d mappings, %d slots, %d subscriber records left", round, len(m), len(slots), len(grants))
		}
		for id := range uint32(s.Datapath.NumBlocks()) {
			if used, err := d.CGNATBlockUsed(id); err != nil || used != [cgnat.Planes]uint32{} {
				t.Fatalf("round %d: block %d after expiry: %v %v", round, id, used, err)
			}
		}
		a.mu.Lock()
		book := []int{a.pool.Blocks(), len(a.pool.Subscribers()), len(a.spent), len(a.emptyAt), len(a.withdrawn)}
		a.mu.Unlock()
		if book[0]+book[1]+book[2]+book[3]+book[4] != 0 {
			t.Fatalf("round %d: the agent's book is not empty: blocks, subscribers, spent, empty, withdrawn %v", round, book)
		}
		if round == 0 {
			heap0 = heapNow()
		}
	}
	if made != rounds*subs*flows {
		t.Fatalf("%d mappings made, want %d", made, rounds*subs*flows)
	}
	if h := heapNow(); h > heap0+4<<20 {
		t.Errorf("heap %d KiB after the churn, %d KiB after its first round", h>>10, heap0>>10)
	}
	st := a.Status()
	if st["grants"] != uint64(rounds*subs*2) || st["releases"] != st["grants"] || st["expired"] != uint64(made) || st["log-written"] != 2*st["grants"] {
		t.Errorf("status %v", st)
	}
	// The log: every grant and release, each block's in turn, in time order.
	f, err := os.Open(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := map[string]string{}
	var prev time.Time
	grantsSeen, releases, lines := 0, 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines++
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		if r.Time.Before(prev) {
			t.Fatalf("line %d goes back in time: %s", lines, sc.Text())
		}
		prev = r.Time
		block := fmt.Sprint(r.Address, r.PortFirst)
		switch {
		case r.Event == EventGrant && last[block] != EventRelease && last[block] != "":
			t.Fatalf("line %d: block granted again before its release: %s", lines, sc.Text())
		case r.Event == EventRelease && last[block] != EventGrant:
			t.Fatalf("line %d: release without its grant: %s", lines, sc.Text())
		case r.Event == EventGrant:
			grantsSeen++
		case r.Event == EventRelease:
			releases++
		}
		last[block] = r.Event
	}
	if grantsSeen != rounds*subs*2 || releases != grantsSeen {
		t.Errorf("the log holds %d grants and %d releases, want %d each", grantsSeen, releases, rounds*subs*2)
	}
	for b, e := range last {
		if e != EventRelease {
			t.Errorf("block %s: last record %s", b, e)
		}
	}
	t.Logf("%d mappings made and expired, %d blocks granted and returned over %d of the pool's", made, grantsSeen, len(last))
}

// heapNow is the live heap after a collection.
func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
