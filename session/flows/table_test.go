package flows

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func newTable(t testing.TB, clk *fakeClock, o Options) *Table {
	t.Helper()
	o.Now = clk.now
	tb, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// flow makes the i-th test flow of proto: site host 2001:db8:5::i.
func flow(proto session.Proto, i int) session.Flow {
	site := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 5, 10: byte(i >> 24), byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
	return session.Flow{
		Proto:  proto,
		Site:   netip.AddrPortFrom(site, uint16(40000+i%20000)),
		Remote: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:ff::1"), 443),
	}
}

func carrier(proto session.Proto, e uint16) session.Carrier {
	return session.Carrier{
		Proto: proto,
		Edge:  netip.AddrPortFrom(netip.MustParseAddr("100.64.0.2"), e),
		Relay: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.6"), 20000),
	}
}

func TestTimeouts(t *testing.T) {
	d := Timeouts{}.WithDefaults()
	for _, tc := range []struct {
		proto session.Proto
		state State
		want  time.Duration
	}{
		{session.UDP, StateOpen, 5 * time.Minute},
		{session.TCP, StateOpen, 124 * time.Minute},
		{session.TCP, StateTransitory, 4 * time.Minute},
		{session.TCP, StateOpening, 4 * time.Minute},
		{session.ICMPv6, StateOpen, time.Minute},
		{session.ICMP, StateOpening, time.Minute},
		{session.Proto(50), StateOpen, 5 * time.Minute}, // ESP rides a UDP carrier
		{session.UDP, StateOpening, 4 * time.Minute},
	} {
		if got := d.For(tc.proto, tc.state); got != tc.want {
			t.Errorf("For(%v, %v) = %v, want %v", tc.proto, tc.state, got, tc.want)
		}
	}
	for _, bad := range []Timeouts{
		{UDP: time.Minute},
		{TCPEstablished: 2 * time.Hour},
		{TCPTransitory: 3 * time.Minute},
		{ICMP: 30 * time.Second},
		{UDP: 31 * 24 * time.Hour},
	} {
		if bad.Check() == nil {
			t.Errorf("%+v accepted", bad)
		}
		if _, err := New(Options{Timeouts: bad}); err == nil {
			t.Errorf("New accepted %+v", bad)
		}
	}
	if err := (Timeouts{UDP: 2 * time.Minute, TCPEstablished: 3 * time.Hour}).Check(); err != nil {
		t.Errorf("valid timeouts refused: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	clk := newClock()
	tb := newTable(t, clk, Options{})
	udp, tcp, icmp := flow(session.UDP, 1), flow(session.TCP, 2), flow(session.ICMPv6, 3)
	for _, f := range []session.Flow{udp, tcp, icmp} {
		if err := tb.Add(f, carrier(f.Proto, 61000), StateOpen); err != nil {
			t.Fatal(err)
		}
	}
	if next, ok := tb.NextDue(); !ok || !next.Equal(clk.t.Add(time.Minute)) {
		t.Errorf("NextDue = %v, %v; want the ICMP flow's minute", next, ok)
	}
	clk.add(time.Minute - time.Nanosecond)
	if got := tb.Expire(nil, 0); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	clk.add(time.Nanosecond)
	if got := tb.Expire(nil, 0); len(got) != 1 || got[0].Flow != icmp {
		t.Fatalf("at 1m: %v, want the ICMP flow", got)
	}
	// Touched at 4m, the UDP flow lives until 9m.
	clk.add(3 * time.Minute)
	tb.Touch(udp)
	clk.add(2 * time.Minute) // 6m
	if got := tb.Expire(nil, 0); len(got) != 0 {
		t.Fatalf("touched flow expired: %v", got)
	}
	clk.add(3 * time.Minute) // 9m
	if got := tb.Expire(nil, 0); len(got) != 1 || got[0].Flow != udp {
		t.Fatalf("at 9m: %v, want the UDP flow", got)
	}
	// A FIN at 10m: the established TCP flow gets 4 more minutes.
	clk.add(time.Minute)
	tb.Touch(tcp)
	if err := tb.Update(tcp, carrier(session.TCP, 61000), StateTransitory); err != nil {
		t.Fatal(err)
	}
	if next, _ := tb.NextDue(); !next.Equal(clk.t.Add(4 * time.Minute)) {
		t.Errorf("NextDue after FIN = %v", next)
	}
	clk.add(4 * time.Minute)
	got := tb.Expire(nil, 0)
	if len(got) != 1 || got[0].Flow != tcp || got[0].State != StateTransitory {
		t.Fatalf("after FIN+4m: %v", got)
	}
	if s := tb.Stats(); s.Expired != 3 || s.Flows != 0 || s.Added != 3 {
		t.Errorf("stats %+v", s)
	}
}

// TestTouchAtOlderIgnored checks a stale last-seen time from the XDP
// maps cannot shorten a flow's life, nor a future one stretch it.
func TestTouchAtOlderIgnored(t *testing.T) {
	clk := newClock()
	tb := newTable(t, clk, Options{})
	f := flow(session.UDP, 1)
	tb.Add(f, carrier(session.UDP, 1), StateOpen)
	clk.add(time.Minute)
	tb.Touch(f)
	tb.TouchAt(f, clk.t.Add(-time.Hour))
	e, _ := tb.Get(f)
	if !e.LastSeen.Equal(clk.t) || !e.Expires.Equal(clk.t.Add(DefaultUDP)) {
		t.Errorf("entry %+v", e)
	}
	tb.TouchAt(f, clk.t.Add(time.Hour)) // from the future: counts as now
	if e, _ := tb.Get(f); !e.LastSeen.Equal(clk.t) {
		t.Errorf("future touch stored %v, want %v", e.LastSeen, clk.t)
	}
}

func TestRefusals(t *testing.T) {
	clk := newClock()
	tb := newTable(t, clk, Options{MaxFlows: 2})
	a, b, c := flow(session.UDP, 1), flow(session.UDP, 2), flow(session.UDP, 3)
	tb.Add(a, carrier(session.UDP, 1), StateOpen)
	if err := tb.Add(a, carrier(session.UDP, 1), StateOpen); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate: %v", err)
	}
	tb.Add(b, carrier(session.UDP, 2), StateOpen)
	if err := tb.Add(c, carrier(session.UDP, 3), StateOpen); !errors.Is(err, ErrFull) {
		t.Errorf("full: %v", err)
	}
	if err := tb.Touch(c); !errors.Is(err, ErrUnknownFlow) {
		t.Errorf("touch unknown: %v", err)
	}
	if _, err := tb.Delete(c); !errors.Is(err, ErrUnknownFlow) {
		t.Errorf("delete unknown: %v", err)
	}
	if err := tb.Update(a, carrier(session.UDP, 1), State(9)); !errors.Is(err, ErrBadState) {
		t.Errorf("bad state: %v", err)
	}
	want := map[string]uint64{ReasonDuplicate: 1, ReasonFull: 1, ReasonUnknownFlow: 2, ReasonBadState: 1}
	if got := tb.Stats().Refused; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("refused %v, want %v", got, want)
	}
	if _, err := tb.Delete(a); err != nil {
		t.Fatal(err)
	}
	if err := tb.Add(c, carrier(session.UDP, 3), StateOpen); err != nil {
		t.Errorf("add after delete: %v", err)
	}
}

func TestSnapshotForReplay(t *testing.T) {
	clk := newClock()
	tb := newTable(t, clk, Options{})
	var want []session.Flow
	for i := range 100 {
		f := flow(session.TCP, i)
		want = append(want, f)
		tb.Add(f, carrier(session.TCP, uint16(61000+i)), StateOpen)
	}
	snap := tb.Snapshot()
	if len(snap) != len(want) {
		t.Fatalf("snapshot has %d flows, want %d", len(snap), len(want))
	}
	var got []session.Flow
	for _, e := range snap {
		got = append(got, e.Flow)
		if e.Carrier.Edge.Port() != uint16(61000)+uint16(e.Flow.Site.Addr().As16()[15]) {
			t.Errorf("flow %v has carrier %v", e.Flow, e.Carrier)
		}
	}
	less := func(a, b session.Flow) int { return a.Site.Compare(b.Site) }
	slices.SortFunc(got, less)
	slices.SortFunc(want, less)
	if !slices.Equal(got, want) {
		t.Error("snapshot flows differ from those added")
	}
}

// TestModel runs random operations against a plain map that stores
// last-seen and state, and checks Expire removes exactly the flows the
// model says are due, no sooner and no later.
func TestModel(t *testing.T) {
	type mflow struct {
		seen  time.Time
		state State
	}
	tos := Timeouts{}.WithDefaults()
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 1))
		clk := newClock()
		tb := newTable(t, clk, Options{})
		model := map[session.Flow]*mflow{}
		protos := []session.Proto{session.UDP, session.TCP, session.ICMPv6, session.Proto(50)}
		for step := range 5000 {
			f := flow(protos[rng.IntN(len(protos))], rng.IntN(300))
			switch op := rng.IntN(20); {
			case op < 6:
				s := State(rng.IntN(int(numStates)))
				err := tb.Add(f, carrier(f.Proto, 1), s)
				if _, dup := model[f]; dup != (err != nil) {
					t.Fatalf("seed %d step %d: add %v: %v, model dup %v", seed, step, f, err, dup)
				}
				if err == nil {
					model[f] = &mflow{clk.t, s}
				}
			case op < 11:
				err := tb.Touch(f)
				if m, ok := model[f]; ok != (err == nil) {
					t.Fatalf("seed %d step %d: touch: %v", seed, step, err)
				} else if ok {
					m.seen = clk.t
				}
			case op < 14:
				s := State(rng.IntN(int(numStates)))
				err := tb.Update(f, carrier(f.Proto, 2), s)
				if m, ok := model[f]; ok != (err == nil) {
					t.Fatalf("seed %d step %d: update: %v", seed, step, err)
				} else if ok {
					m.state = s
				}
			case op < 15:
				_, err := tb.Delete(f)
				if _, ok := model[f]; ok != (err == nil) {
					t.Fatalf("seed %d step %d: delete: %v", seed, step, err)
				}
				delete(model, f)
			case op < 18:
				clk.add(time.Duration(rng.IntN(90)) * time.Second)
			default:
				var want []string
				for mf, m := range model {
					if !clk.t.Before(m.seen.Add(tos.For(mf.Proto, m.state))) {
						want = append(want, mf.String())
						delete(model, mf)
					}
				}
				var got []string
				for _, e := range tb.Expire(nil, 0) {
					got = append(got, e.Flow.String())
				}
				sort.Strings(want)
				sort.Strings(got)
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: expired %v, model %v", seed, step, got, want)
				}
			}
			if tb.Len() != len(model) {
				t.Fatalf("seed %d step %d: len %d, model %d", seed, step, tb.Len(), len(model))
			}
		}
	}
}

// TestMemoryPerFlow fills a million flows and reports the heap they take
// next to a bare map of the same keys (the in-run baseline); it checks
// the table gives everything back when they expire, in batches.
func TestMemoryPerFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("1M flows skipped in -short")
	}
	const n = 1_000_000
	flows := make([]session.Flow, n)
	for i := range flows {
		flows[i] = flow(session.UDP, i)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	h0 := heap()
	bare := make(map[session.Flow]struct{})
	for _, f := range flows {
		bare[f] = struct{}{}
	}
	baseline := (heap() - h0) / n
	runtime.KeepAlive(bare)

	clk := newClock()
	h0 = heap()
	tb := newTable(t, clk, Options{})
	start := time.Now()
	for i, f := range flows {
		if err := tb.Add(f, carrier(session.UDP, uint16(i)), StateOpen); err != nil {
			t.Fatal(err)
		}
	}
	fill := time.Since(start)
	perFlow := (heap() - h0) / n
	clk.add(DefaultUDP)
	start = time.Now()
	batch := make([]Entry, 0, 1024)
	got := 0
	for {
		batch = tb.Expire(batch[:0], cap(batch))
		got += len(batch)
		if len(batch) < cap(batch) {
			break
		}
	}
	sweep := time.Since(start)
	if got != n || tb.Len() != 0 || len(tb.h) != 0 {
		t.Fatalf("expired %d of %d; left %d flows, heap %d", got, n, tb.Len(), len(tb.h))
	}
	t.Logf("1M flows: %d bytes per flow (bare map of the keys: %d, ratio %.1f); add %.0f ns/flow; expire %.0f ns/flow in batches of 1024",
		perFlow, baseline, float64(perFlow)/float64(baseline), float64(fill.Nanoseconds())/n, float64(sweep.Nanoseconds())/n)
	runtime.KeepAlive(tb)
}

func BenchmarkAddDelete(b *testing.B) {
	clk := newClock()
	tb := newTable(b, clk, Options{})
	for i := range 100_000 {
		tb.Add(flow(session.TCP, i), carrier(session.TCP, 1), StateOpen)
	}
	fs := make([]session.Flow, 1024)
	for i := range fs {
		fs[i] = flow(session.UDP, i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f := fs[i%len(fs)]
		tb.Add(f, carrier(session.UDP, 1), StateOpen)
		tb.Delete(f)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "add+delete/s")
}

// BenchmarkMapBaseline is the in-run yardstick for BenchmarkAddDelete:
// a bare map insert and delete with the same key.
func BenchmarkMapBaseline(b *testing.B) {
	m := map[session.Flow]*entry{}
	for i := range 100_000 {
		m[flow(session.TCP, i)] = &entry{}
	}
	fs := make([]session.Flow, 1024)
	for i := range fs {
		fs[i] = flow(session.UDP, i)
	}
	for i := 0; b.Loop(); i++ {
		f := fs[i%len(fs)]
		m[f] = &entry{}
		delete(m, f)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "insert+delete/s")
}

// BenchmarkTouch is the cost of copying one last-seen time from XDP.
func BenchmarkTouch(b *testing.B) {
	clk := newClock()
	tb := newTable(b, clk, Options{})
	fs := make([]session.Flow, 100_000)
	for i := range fs {
		fs[i] = flow(session.UDP, i)
		tb.Add(fs[i], carrier(session.UDP, 1), StateOpen)
	}
	for i := 0; b.Loop(); i++ {
		tb.Touch(fs[i%len(fs)])
	}
}

// BenchmarkAddExpire is BenchmarkAddDelete with the flow leaving by
// expiry (a heap pop) instead of Delete, against 100k standing flows.
func BenchmarkAddExpire(b *testing.B) {
	clk := newClock()
	tb := newTable(b, clk, Options{})
	for i := range 100_000 {
		tb.Add(flow(session.TCP, i), carrier(session.TCP, 1), StateOpen) // 2h4m: never due here
	}
	fs := make([]session.Flow, 1024)
	for i := range fs {
		fs[i] = flow(session.UDP, i)
	}
	batch := make([]Entry, 0, 1)
	for i := 0; b.Loop(); i++ {
		tb.Add(fs[i%len(fs)], carrier(session.UDP, 1), StateOpen)
		clk.add(DefaultUDP) // the UDP flow is due; the TCP ones are not
		if batch = tb.Expire(batch[:0], 1); len(batch) != 1 {
			b.Fatalf("expired %d", len(batch))
		}
		clk.add(-DefaultUDP) // back, so every iteration sees the same table
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "add+expire/s")
}
