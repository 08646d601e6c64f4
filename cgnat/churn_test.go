package cgnat

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
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
