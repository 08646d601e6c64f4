package cgnat

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/xdp"
)

// TestAgentNAT64: an IPv6-only subscriber is its /64: a miss from any
// address in it grants the /64 a block, logged under the /64's first
// address; at its quota the /64 is spent, and a mapping of one of its
// hosts expiring makes the /64 unspent again (the sweep finds the
// subscriber of a mapping's host address); the sweep's gauges count
// NAT64 mappings apart too.
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
	sub, proto, ok := MissSubscriber(miss)
	if want := netip.MustParseAddr("2001:db8:600:7::"); !ok || sub != want || proto != 17 {
		t.Fatalf("miss from %v: subscriber %v, protocol %d, %v; want %v, 17", host, sub, proto, ok, want)
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
	// The mappings gauges: a NAT64 mapping counts in its protocol's
	// mappings and in the NAT64 ones; an IPv4 subscriber's only in the
	// first.
	k6 := dp.mapping(t, sub, 5001, 6, 0)
	o6 := dp.maps[k6]
	delete(dp.maps, k6)
	k6.Addr = host
	dp.maps[k6] = o6
	v4 := netip.MustParseAddr("100.64.0.9")
	if err := a.NoBlock(v4); err != nil {
		t.Fatal(err)
	}
	dp.mapping(t, v4, 5002, 6, 0)
	if err := a.Sweep(); err != nil {
		t.Fatal(err)
	}
	if a.mappings[0].Load() != 2 || a.mappings64[0].Load() != 1 || a.mappings64[1].Load() != 0 {
		t.Errorf("TCP mappings %d, NAT64 ones %d (UDP %d); want 2, 1 (0)", a.mappings[0].Load(), a.mappings64[0].Load(), a.mappings64[1].Load())
	}
}

// TestServiceMissNAT64: an IPv6-only subscriber's first packet (a miss
// of relay_sub from a host of a /64 of inside6) gets the /64 a block and
// is sent through the datapath again, once, as an IPv4 subscriber's is;
// a burst of them from two hosts of the /64 costs one block (NoPort asks
// the ICMPv6 echo's plane, ICMP, and finds a free port); a frame too
// short for its IPv6 header is counted not-ip and grants nothing.
func TestServiceMissNAT64(t *testing.T) {
	c := Config{Interface: "sub0", Inside: "100.64.0.0/24", Pool: "192.0.2.8/30", Ports: "40960-45055",
		BlockSize: 512, BlocksPerSubscriber: 2, Inside6: "2001:db8:600::/56", Log: t.TempDir() + "/blocks.log"}
	s, err := c.Parse("cgnat", Relay{Interface: "ext0"})
	if err != nil {
		t.Fatal(err)
	}
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
	var resent [][]byte
	sv := &Service{A: a, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		resend: func(m xdp.Miss) error { resent = append(resent, m.Data); return nil }}
	dst := netip.MustParseAddr("64:ff9b::c633:640a")
	ping := func(host string) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 58, Src: netip.MustParseAddr(host), Dst: dst, SPort: 7, Payload: []byte("x")})
	}
	first, second := ping("2001:db8:600:9::1"), ping("2001:db8:600:9::2")
	for _, m := range []xdp.Miss{
		{Data: first[:14+39], Len: 14 + 39},
		{Data: first, Len: len(first)},
		{Data: second, Len: len(second)},
	} {
		sv.Miss(m)
	}
	sub := netip.MustParseAddr("2001:db8:600:9::")
	if a.M.Get(mFirstNotIP) != 1 || a.M.Get(mFirstResent) != 2 || a.M.Get(mErrGrant) != 0 || len(resent) != 2 ||
		dp.subs[sub] == nil || len(dp.subs[sub].Blocks) != 1 {
		t.Errorf("counters %v, resent %d, /64's grant %v", a.M.Snapshot(), len(resent), dp.subs[sub])
	}
}
