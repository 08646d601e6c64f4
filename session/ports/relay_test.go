package ports

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
)

var (
	relayA = netip.MustParseAddr("198.51.100.6")
	relayB = netip.MustParseAddr("198.51.100.7")
	cgnX   = netip.MustParseAddr("203.0.113.1")
	cgnY   = netip.MustParseAddr("203.0.113.2")
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func fixedStart(int) int                 { return 0 }

func newTestRelay(t testing.TB, c RelayConfig) *Relay {
	t.Helper()
	r, err := NewRelay(c)
	if err != nil {
		t.Fatal(err)
	}
	r.t.start = fixedStart
	return r
}

func TestRelaySamePortForOtherPublicAddr(t *testing.T) {
	r := newTestRelay(t, RelayConfig{Addrs: []netip.Addr{relayA}, Ports: Range{20000, 20009}})
	r.SetSite("home", 100)
	r.SetSite("shop", 100)
	a, err := r.Grant("home", cgnX, session.UDP)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Grant("shop", cgnY, session.UDP)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Grant("home", cgnX, session.TCP)
	if err != nil {
		t.Fatal(err)
	}
	if a.Port != b.Port || a.Port != c.Port {
		t.Errorf("different keys should each start at the same first port: %d %d %d", a.Port, b.Port, c.Port)
	}
	d, err := r.Grant("shop", cgnX, session.UDP)
	if err != nil {
		t.Fatal(err)
	}
	if d.Port == a.Port {
		t.Errorf("two carriers from %v share R %d", cgnX, d.Port)
	}
	if a.RelayAddr() != netip.AddrPortFrom(relayA, a.Port) || a.Site() != "home" || d.Site() != "shop" {
		t.Errorf("lease fields: %+v %+v", a, d)
	}
}

func TestRelayQuotaAndRefusalCounters(t *testing.T) {
	r := newTestRelay(t, RelayConfig{Addrs: []netip.Addr{relayA}, Ports: Range{20000, 20002}, Quarantine: -1})
	r.SetSite("home", 2)
	r.SetSite("shop", 10)
	l1, _ := r.Grant("home", cgnX, session.UDP)
	if _, err := r.Grant("home", cgnY, session.UDP); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Grant("home", cgnX, session.UDP); !errors.Is(err, ErrSiteQuota) {
		t.Fatalf("third grant for a quota of 2: %v", err)
	}
	if _, err := r.Grant("nobody", cgnX, session.UDP); !errors.Is(err, ErrUnknownSite) {
		t.Fatalf("unknown site: %v", err)
	}
	// shop fills the rest of cgnX's range: 2 ports left of 3.
	for range 2 {
		if _, err := r.Grant("shop", cgnX, session.UDP); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Grant("shop", cgnX, session.UDP); !errors.Is(err, ErrExhausted) {
		t.Fatalf("grant from a full range: %v", err)
	}
	if err := r.Release(l1); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(l1); !errors.Is(err, ErrNotGranted) {
		t.Fatalf("double release: %v", err)
	}
	if _, err := r.Grant("home", cgnX, session.UDP); err != nil {
		t.Fatalf("grant after release: %v", err)
	}
	want := map[Reason]uint64{ReasonSiteQuota: 1, ReasonUnknownSite: 1, ReasonExhausted: 1, ReasonNotGranted: 1}
	got := r.Refused.Snapshot()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counter %s = %d, want %d (all: %s)", k, got[k], v, r.Refused.String())
		}
	}
	if len(got) != len(want) {
		t.Errorf("unexpected counters: %s", r.Refused.String())
	}
	if r.Held("home") != 2 || r.Held("shop") != 2 {
		t.Errorf("held home %d shop %d", r.Held("home"), r.Held("shop"))
	}
}

func TestRelaySpillsToNextAddressAndQuarantine(t *testing.T) {
	clk := newClock()
	r := newTestRelay(t, RelayConfig{Addrs: []netip.Addr{relayA, relayB}, Ports: Range{20000, 20000}, Quarantine: time.Minute, Now: clk.now})
	r.SetSite("home", 10)
	a, err := r.Grant("home", cgnX, session.UDP)
	if err != nil || a.Relay != relayA {
		t.Fatalf("first grant %+v, %v", a, err)
	}
	b, err := r.Grant("home", cgnX, session.UDP)
	if err != nil || b.Relay != relayB {
		t.Fatalf("second grant should use the second address: %+v, %v", b, err)
	}
	r.Release(a)
	if _, err := r.Grant("home", cgnX, session.UDP); !errors.Is(err, ErrQuarantined) {
		t.Fatalf("grant while the only free port rests: %v", err)
	}
	clk.add(time.Minute)
	c, err := r.Grant("home", cgnX, session.UDP)
	if err != nil || c != (Lease{Key: a.Key, Port: a.Port, site: a.site}) {
		t.Fatalf("after quarantine: %+v, %v", c, err)
	}
	if n := r.Refused.Get(ReasonQuarantined); n != 1 {
		t.Errorf("quarantined counter %d", n)
	}
}

func TestRelayTrimAndClaim(t *testing.T) {
	clk := newClock()
	r := newTestRelay(t, RelayConfig{Addrs: []netip.Addr{relayA}, Ports: Range{20000, 29999}, Quarantine: time.Minute, Now: clk.now})
	r.SetSite("home", 10)
	l, _ := r.Grant("home", cgnX, session.UDP)
	r.Release(l)
	if n := r.Trim(); n != 0 {
		t.Fatalf("trimmed a pool inside quarantine: %d", n)
	}
	clk.add(time.Minute)
	if n := r.Trim(); n != 1 || r.Stats().Pools != 0 {
		t.Fatalf("trim = %d, pools %d", n, r.Stats().Pools)
	}
	// After a restart the edge replays its carrier: the relay claims R.
	k := Key{relayA, cgnY, session.TCP}
	c, err := r.Claim("home", k, 25000)
	if err != nil || c.Port != 25000 {
		t.Fatalf("claim: %+v %v", c, err)
	}
	if _, err := r.Claim("home", k, 25000); !errors.Is(err, ErrInUse) {
		t.Fatalf("second claim: %v", err)
	}
	if _, err := r.Claim("home", Key{relayB, cgnY, session.TCP}, 25000); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("claim on a foreign address: %v", err)
	}
	if r.Held("home") != 1 {
		t.Errorf("held %d", r.Held("home"))
	}
}

// TestRelayAutoTrim checks pools of CGNAT addresses no longer seen are
// dropped by Grant itself, without a call to Trim.
func TestRelayAutoTrim(t *testing.T) {
	clk := newClock()
	r := newTestRelay(t, RelayConfig{Addrs: []netip.Addr{relayA}, Ports: Range{20000, 20099}, Quarantine: time.Second, Now: clk.now})
	r.SetSite("home", 1000)
	for i := range 1000 {
		l, err := r.Grant("home", netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), session.UDP)
		if err != nil {
			t.Fatal(err)
		}
		r.Release(l)
	}
	if p := r.Stats().Pools; p != 1000 {
		t.Fatalf("%d pools before the quarantine ends", p)
	}
	clk.add(time.Second)
	for range 10 * autoTrimEvery {
		l, _ := r.Grant("home", cgnX, session.UDP)
		r.Release(l)
	}
	// 10 rounds drop up to 10*autoTrimMax of the 1000 idle pools.
	if p := r.Stats().Pools; p >= 1000 || p < 1000-10*autoTrimMax {
		t.Fatalf("%d pools after automatic trimming", p)
	}
}

// TestRelayMillionGrantsNoLeak churns a million grants and releases over
// many CGNAT addresses and checks nothing is left held, every pool is
// dropped by Trim, and the heap returns to where it started.
func TestRelayMillionGrantsNoLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("1M churn skipped in -short")
	}
	clk := newClock()
	r := newTestRelay(t, RelayConfig{Addrs: []netip.Addr{relayA}, Ports: Range{20000, 59999}, Quarantine: time.Second, Now: clk.now})
	r.SetSite("home", 1<<20)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const window = 5000 // carriers open at once
	open := make([]Lease, 0, window)
	for i := range 1_000_000 {
		if len(open) == window {
			if err := r.Release(open[0]); err != nil {
				t.Fatal(err)
			}
			open = open[1:]
		}
		pub := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8 & 0x3), byte(i)})
		l, err := r.Grant("home", pub, session.UDP)
		if err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
		open = append(open, l)
		if i%10000 == 0 {
			clk.add(time.Second)
		}
	}
	var peak runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&peak)
	pools := r.Stats().Pools
	for _, l := range open {
		if err := r.Release(l); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(time.Minute)
	r.Trim()
	s := r.Stats()
	if s.InUse != 0 || s.Pools != 0 || r.Held("home") != 0 || s.Granted != s.Released || s.Granted != 1_000_000 {
		t.Fatalf("after churn: %+v, held %d", s, r.Held("home"))
	}
	open = nil
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("heap before %d KiB; live with %d ports open in %d pools %d KiB (%d B per pool); after release+trim %d KiB",
		before.HeapAlloc>>10, window, pools, peak.HeapAlloc>>10, (peak.HeapAlloc-before.HeapAlloc)/uint64(pools), after.HeapAlloc>>10)
	if after.HeapAlloc > before.HeapAlloc+1<<20 {
		t.Errorf("heap grew by %d KiB after everything was released", (after.HeapAlloc-before.HeapAlloc)>>10)
	}
}

func BenchmarkRelayGrantRelease(b *testing.B) {
	r := newTestRelay(b, RelayConfig{Addrs: []netip.Addr{relayA}, Ports: Range{20000, 59999}, Quarantine: -1})
	r.SetSite("home", 1<<30)
	pubs := make([]netip.Addr, 256)
	for i := range pubs {
		pubs[i] = netip.AddrFrom4([4]byte{100, 64, 0, byte(i)})
	}
	// A standing population, so grants run against a half-used range.
	for i := range 20000 {
		if _, err := r.Grant("home", pubs[i%len(pubs)], session.UDP); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l, err := r.Grant("home", pubs[i%len(pubs)], session.UDP)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Release(l); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grant+release/s")
}

// BenchmarkMapBaseline is the in-run yardstick: one map insert and
// delete per iteration, the least any allocator keyed like Relay does.
func BenchmarkMapBaseline(b *testing.B) {
	m := map[Key]uint16{}
	k := Key{relayA, cgnX, session.UDP}
	for i := 0; b.Loop(); i++ {
		k.Public = netip.AddrFrom4([4]byte{100, 64, 0, byte(i)})
		m[k] = uint16(i)
		delete(m, k)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "insert+delete/s")
}
