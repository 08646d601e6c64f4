package xdp

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// The miss path's bound in these tests: a burst of 5, then 2 a second.
// A flood of a few hundred runs (a few ms of BPF_PROG_RUN) meets it, and
// a token takes long enough (500 ms) to come back that none does while
// the tests read counters and drain the ring between packets (20 ms a
// drain); the refill wait is the whole bucket, 2.5 s.
const (
	testMissRate  = 2
	testMissBurst = 5
	testMissToken = time.Second / testMissRate
)

// missRig is a datapath of one role with the world's tables and the
// test bound, and the reasons it counted since the last look.
type missRig struct {
	t    *testing.T
	d    *Datapath
	m    *MissReader
	role xlat.Role
	last [xlat.NumReasons]uint64
}

func newMissRig(t *testing.T, role xlat.Role) *missRig {
	cfg := xlattest.Config(xlattest.EdgeWAN)
	if role == xlat.RoleRelayExt {
		cfg = xlattest.Config(xlattest.RelayAddr)
	}
	priv.Require(t)
	d, m := loadWorldOpts(t, cfg, Options{MissRate: testMissRate, MissBurst: testMissBurst}, xlattest.World())
	r := &missRig{t: t, d: d, m: m, role: role}
	r.reasons()
	return r
}

// run runs one packet; every packet here is dropped (a miss goes to the
// agent, one over the bound is dropped).
func (r *missRig) run(in []byte) {
	r.t.Helper()
	ret, err := r.d.Program(r.role).Run(&ebpf.RunOptions{Data: in})
	if err != nil {
		r.t.Fatal(err)
	}
	if xlat.Verdict(ret) != xlat.Drop {
		r.t.Fatalf("verdict %v, want XDP_DROP", xlat.Verdict(ret))
	}
}

// reasons returns the reasons counted since the last call, those counted
// only.
func (r *missRig) reasons() map[xlat.Reason]uint64 {
	r.t.Helper()
	now, err := r.d.Reasons()
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[xlat.Reason]uint64{}
	for i := range now {
		if n := now[i] - r.last[i]; n != 0 {
			out[xlat.Reason(i)] = n
		}
	}
	r.last = now
	return out
}

// expect runs one packet and checks the one reason it was counted under,
// and that the ring got it exactly when that reason hands it over.
func (r *missRig) expect(what string, in []byte, want xlat.Reason) {
	r.t.Helper()
	r.run(in)
	if got := r.reasons(); len(got) != 1 || got[want] != 1 {
		r.t.Errorf("%s: reasons %v, want one %v", what, got, want)
	}
	recs := r.drain()
	if want.ToAgent() != (len(recs) == 1) || len(recs) > 1 {
		r.t.Errorf("%s: %d ring records for %v", what, len(recs), want)
	}
	if len(recs) == 1 && !bytes.Equal(recs[0].Data, in) {
		r.t.Errorf("%s: ring record is not the packet", what)
	}
}

// flood runs n packets of one source (built by pkt(i)) as fast as it
// can and checks that the ring got at least the burst, at most the burst
// and the tokens the time it took gave back, and that every other packet
// was counted drop-miss-rate.
func (r *missRig) flood(what string, n int, pkt func(i int) []byte) {
	r.t.Helper()
	start := time.Now()
	for i := range n {
		r.run(pkt(i))
	}
	refill := int(time.Since(start) / testMissToken)
	got := r.reasons()
	recs := r.drain()
	sent := got[xlat.ReasonMiss] + got[xlat.ReasonTTLToAgent] + got[xlat.ReasonICMPErrToAgent]
	if sent < testMissBurst || sent > uint64(testMissBurst+refill) {
		r.t.Errorf("%s: %d of %d packets to the agent, want %d (and %d refilled)", what, sent, n, testMissBurst, refill)
	}
	if got[xlat.ReasonDropMissRate] != uint64(n)-sent || sent+got[xlat.ReasonDropMissRate] != uint64(n) {
		r.t.Errorf("%s: reasons %v for %d packets", what, got, n)
	}
	if uint64(len(recs)) != sent {
		r.t.Errorf("%s: %d ring records, %d counted", what, len(recs), sent)
	}
	r.t.Logf("%s: %d of %d to the ring, %d drop-miss-rate", what, sent, n, got[xlat.ReasonDropMissRate])
}

// drain reads the ring until it is empty.
func (r *missRig) drain() []Miss {
	r.t.Helper()
	var out []Miss
	for {
		r.m.SetDeadline(time.Now().Add(20 * time.Millisecond))
		m, err := r.m.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, m)
	}
}

// newFlow6 is a LAN host's first packet of a new TCP flow to the Internet
// (no entry: the world has none from port 50000 on).
func newFlow6(src netip.Addr, port uint16, ttl uint8) []byte {
	return xlattest.Build(xlattest.Spec{Proto: 6, Src: src, SPort: port, Dst: xlattest.Remote6, DPort: 443, TTL: ttl, Payload: []byte("hello")})
}

// TestMissRateEdgeLAN: a LAN host opening flows as fast as it can reaches
// the agent's ring a burst's worth of times and is then counted
// drop-miss-rate; so is any address of its /64, and its hop-limit-1
// packets (ttl-to-agent shares the bucket). Another /64 is not affected,
// and the first host gets through again once its bucket refilled.
func TestMissRateEdgeLAN(t *testing.T) {
	r := newMissRig(t, xlat.RoleEdgeLAN)
	host := xlattest.SiteHost
	r.flood("one LAN host", 200, func(i int) []byte { return newFlow6(host, uint16(50000+i), 0) })
	r.expect("same /64, another address", newFlow6(netip.MustParseAddr("2001:db8:1::11"), 50000, 0), xlat.ReasonDropMissRate)
	r.expect("same host, hop limit 1", newFlow6(host, 50001, 1), xlat.ReasonDropMissRate)
	other := netip.MustParseAddr("2001:db8:1:2::5")
	r.expect("another /64", newFlow6(other, 50000, 0), xlat.ReasonMiss)
	r.expect("another /64, hop limit 1", newFlow6(other, 50001, 1), xlat.ReasonTTLToAgent)
	r.status("after the flood", "2001:db8:1::/64")

	// A functional wait, not a timing assertion: the whole bucket back.
	time.Sleep(testMissBurst*testMissToken + 100*time.Millisecond)
	r.status("refilled")
	r.flood("the same host, refilled", 100, func(i int) []byte { return newFlow6(host, uint16(51000+i), 0) })
}

// status checks what MissStatus says: the test bound, and exactly the
// sources over it.
func (r *missRig) status(when string, over ...string) {
	r.t.Helper()
	st, err := r.d.MissStatus()
	if err != nil {
		r.t.Fatal(err)
	}
	if st.Rate != testMissRate || st.Burst != testMissBurst || !slices.Equal(st.Over, over) {
		r.t.Errorf("%s: status %+v, want rate %d, burst %d, over %q", when, st, testMissRate, testMissBurst, over)
	}
}

// TestMissRateRelay: at the relay, an IPv4 source spraying the carrier
// range is bound per address (another address is not), and an ICMPv6
// error a router sends about a flow counts against the flow's far end
// (the error's key is the packet it quotes, reversed), sharing the
// bucket of that end's /64 with its misses; a carrier whose TTL runs out
// counts against its CGNAT address.
func TestMissRateRelay(t *testing.T) {
	r := newMissRig(t, xlat.RoleRelayExt)
	carrier := func(src netip.Addr, sport uint16, ttl uint8) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: src, SPort: sport, Dst: xlattest.RelayAddr, DPort: 30000, TTL: ttl, Payload: []byte("first")})
	}
	pub := xlattest.CGNATPub
	r.flood("one CGNAT address", 200, func(i int) []byte { return carrier(pub, uint16(40000+i), 0) })
	r.expect("another CGNAT address", carrier(netip.MustParseAddr("198.51.100.8"), 40000, 0), xlat.ReasonMiss)
	r.status("after the flood", pub.String())
	r.expect("a carrier's TTL ran out", carrier(pub, 20001, 1), xlat.ReasonDropMissRate)

	var tooBig []byte
	for _, f := range xlattest.Fixtures() {
		if f.Name == "icmp-error/relay/router-packet-too-big" {
			tooBig = f.In
		}
	}
	if tooBig == nil {
		t.Fatal("fixture icmp-error/relay/router-packet-too-big is gone")
	}
	r.expect("router's packet too big", tooBig, xlat.ReasonICMPErrToAgent)
	// The remote (2001:db8:2::20) opens inbound flows to the site until
	// its /64's bucket is empty; its flow's errors are then refused too.
	inbound := func(i int) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 6, Src: xlattest.Remote6, SPort: uint16(1000 + i), Dst: xlattest.SiteHost, DPort: 22, Payload: []byte("syn")})
	}
	for i := range 50 {
		r.run(inbound(i))
	}
	got := r.reasons()
	if got[xlat.ReasonMiss] > testMissBurst || got[xlat.ReasonDropMissRate] == 0 {
		t.Errorf("inbound flood: reasons %v", got)
	}
	r.drain()
	r.expect("router's packet too big, remote over its rate", tooBig, xlat.ReasonDropMissRate)
}

// The bound's figures as the programs take them; zero means default,
// NoMissLimit none.
func TestMissLimitOptions(t *testing.T) {
	for _, c := range []struct {
		opts         Options
		token, depth uint64
	}{
		{Options{}, 5_000_000, 250_000_000},
		{Options{MissRate: 1000, MissBurst: 10}, 1_000_000, 10_000_000},
		{Options{MissRate: 1e9, MissBurst: 1}, 1, 1},
		{Options{NoMissLimit: true, MissRate: 5}, 0, 0},
	} {
		token, depth, err := missLimit(c.opts)
		if err != nil || token != c.token || depth != c.depth {
			t.Errorf("%+v: %d ns a token, %d the bucket (%v); want %d, %d", c.opts, token, depth, err, c.token, c.depth)
		}
	}
	if _, _, err := missLimit(Options{MissRate: 1e9 + 1}); err == nil {
		t.Error("a rate over one a nanosecond accepted")
	}
}

// A datapath without the bound says so, and the agents' default is the
// default.
func TestMissStatusUnbound(t *testing.T) {
	priv.Require(t)
	for _, c := range []struct {
		opts        Options
		rate, burst uint64
	}{{Options{NoMissLimit: true}, 0, 0}, {Options{}, DefaultMissRate, DefaultMissBurst}} {
		d, _ := loadWorldOpts(t, xlattest.Config(xlattest.EdgeWAN), c.opts, &xlattest.Tables{})
		st, err := d.MissStatus()
		if err != nil || st.Rate != c.rate || st.Burst != c.burst || st.Over != nil {
			t.Errorf("%+v: status %+v (%v), want rate %d burst %d", c.opts, st, err, c.rate, c.burst)
		}
	}
}

func TestMissSourceNames(t *testing.T) {
	a4 := netip.MustParseAddr("198.51.100.7").As4()
	a6 := netip.MustParseAddr("2001:db8:1:2:3:4:5:6").As16()
	for k, want := range map[datapathMissSrc]string{
		{Family: 4, Addr: [2]uint32{le32(a4[:])}}:                "198.51.100.7",
		{Family: 6, Addr: [2]uint32{le32(a6[0:]), le32(a6[4:])}}: "2001:db8:1:2::/64",
	} {
		if got := missSource(k); got != want {
			t.Errorf("%+v: %s, want %s", k, got, want)
		}
	}
}
