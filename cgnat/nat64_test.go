package cgnat

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestAgentNAT64: an IPv6-only subscriber is its /64: a miss from any
// address in it grants the /64 a block, logged under the /64's first
// address; at its quota the /64 is spent, and a mapping of one of its
// hosts expiring makes the /64 unspent again (the sweep finds the
// subscriber of a mapping's host address).
func TestAgentNAT64(t *testing.T) {
	c := Config{Interface: "sub0", Inside: "100.64.0.0/24", Pool: "192.0.2.8/30", Ports: "40960-45055",
		BlockSize: 512, BlocksPerSubscriber: 2, Inside6: "2001:db8:600::/56", Log: t.TempDir() + "/blocks.log"}
	s, err := c.Parse("cgnat", Relay{Interface: "ext0"})
	if err != nil {
		t.Fatal(err)
	}
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
	host := netip.MustParseAddr("2001:db8:600:7::abcd")
	miss := xlattest.Build(xlattest.Spec{Proto: 17, Src: host, SPort: 5000, Dst: netip.MustParseAddr("64:ff9b::c633:640a"), DPort: 53})
	sub, ok := MissSubscriber(miss)
	if want := netip.MustParseAddr("2001:db8:600:7::"); !ok || sub != want {
		t.Fatalf("miss from %v: subscriber %v %v, want %v", host, sub, ok, want)
	}
	if err := a.NoBlock(sub); err != nil {
		t.Fatal(err)
	}
	var rec Record
	if err := json.Unmarshal([]byte(strings.TrimSpace(readLog(t, s.Log))), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Event != EventGrant || rec.Subscriber != sub || len(dp.subs[sub].Blocks) != 1 {
		t.Fatalf("grant: record %+v, datapath %+v", rec, dp.subs[sub])
	}
	k := dp.mapping(t, sub, 5000, 17, 0)
	// The datapath keys a NAT64 mapping by the host's whole address.
	o := dp.maps[k]
	delete(dp.maps, k)
	k.Addr = host
	dp.maps[k] = o
	if err := a.NoBlock(sub); err != nil {
		t.Fatal(err)
	}
	if err := a.NoBlock(sub); err != nil {
		t.Fatal(err)
	}
	if !dp.subs[sub].Spent || len(dp.subs[sub].Blocks) != 2 {
		t.Fatalf("at quota: %+v", *dp.subs[sub])
	}
	clk.step(2*time.Minute + 2*EpochLength)
	if err := a.Sweep(); err != nil {
		t.Fatal(err)
	}
	if len(dp.released) != 1 || dp.released[0] != k || dp.subs[sub].Spent {
		t.Fatalf("after the UDP timeout: released %v, /64 spent %v", dp.released, dp.subs[sub].Spent)
	}
	if _, ok := s.Datapath.SubIndex(host); ok {
		t.Errorf("a host address taken for a subscriber record")
	}
}
