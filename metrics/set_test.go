package metrics

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	testSet    = NewSet("unmap_test_unknown_counter_total")
	testOpened = testSet.Counter("unmap_test_opened_total", "opened", "Flows opened.")
	testDrops  = testSet.Family("unmap_test_drops_total", "Drops, by reason.", "reason")
	testFull   = testDrops.ValueNamed("full", "drop-full")
	testLate   = testDrops.ValueNamed("late", "drop-late")
)

// TestCounters: values are per Counters (two agents in a process count
// apart), Snapshot shows readable names, and /metrics shows the declared
// names, label values and help, zeros included.
func TestCounters(t *testing.T) {
	a, b := testSet.New(), testSet.New()
	a.Inc(testOpened)
	a.Add(testFull, 3)
	b.Inc(testLate)
	if a.Get(testOpened) != 1 || a.Get(testFull) != 3 || a.Get(testLate) != 0 || b.Get(testLate) != 1 {
		t.Fatalf("a %v b %v", a.Snapshot(), b.Snapshot())
	}
	snap := a.Snapshot()
	if len(snap) != 2 || snap["opened"] != 1 || snap["drop-full"] != 3 {
		t.Errorf("snapshot %v", snap)
	}
	if a.GetName("drop-full") != 3 || a.Sum(testDrops) != 3 {
		t.Errorf("GetName %d Sum %d", a.GetName("drop-full"), a.Sum(testDrops))
	}
	r := prometheus.NewRegistry()
	r.MustRegister(a)
	w := httptest.NewRecorder()
	Handler(r).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		"# HELP unmap_test_drops_total Drops, by reason.",
		`unmap_test_drops_total{reason="full"} 3`,
		`unmap_test_drops_total{reason="late"} 0`,
		"unmap_test_opened_total 1",
		"unmap_test_unknown_counter_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
}

// TestUnknownName: a name counted by lookup that was never declared is
// a bug; it is counted under the set's unknown counter, not lost, and
// not under a name of its own.
func TestUnknownName(t *testing.T) {
	c := testSet.New()
	c.IncName("drop-late")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("an undeclared name in a test binary: no panic")
			}
		}()
		c.IncName("drop-nonsense")
	}()
	strict = false
	defer func() { strict = true }()
	c.IncName("drop-nonsense")
	if c.Get(testLate) != 1 || c.Unknown() != 1 {
		t.Errorf("late %d unknown %d", c.Get(testLate), c.Unknown())
	}
	if _, ok := testSet.Lookup("drop-nonsense"); ok {
		t.Error("an undeclared name found")
	}
}

func TestDeclaredTwice(t *testing.T) {
	for name, declare := range map[string]func(){
		"family":   func() { testSet.Family("unmap_test_drops_total", "again", "reason") },
		"readable": func() { testDrops.ValueNamed("other", "drop-full") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s declared twice: no panic", name)
				}
			}()
			declare()
		}()
	}
}

func TestCheckListen(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:9410": true, "[::1]:9410": true, "localhost:9410": true, ":9410": true,
		"127.0.0.1": false, "127.0.0.1:0": false, "127.0.0.1:70000": false, "a b:1": false, "http://x:1": false,
	} {
		if err := CheckListen("metrics_listen", addr); (err == nil) != ok {
			t.Errorf("%q: %v", addr, err)
		}
	}
}

// The cost of one counter increment: today's map[string]uint64 under the
// agent's mutex (edge agent.count, relay countLocked) against a declared
// counter (one atomic add), from as many goroutines as GOMAXPROCS.
func BenchmarkIncrementMapUnderLock(b *testing.B) {
	var mu sync.Mutex
	m := map[string]uint64{}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			m["inbound-held-full"]++
			mu.Unlock()
		}
	})
}

func BenchmarkIncrementTyped(b *testing.B) {
	c := testSet.New()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc(testFull)
		}
	})
}

func BenchmarkIncrementMapUnderLockSerial(b *testing.B) {
	var mu sync.Mutex
	m := map[string]uint64{}
	for range b.N {
		mu.Lock()
		m["inbound-held-full"]++
		mu.Unlock()
	}
}

func BenchmarkIncrementTypedSerial(b *testing.B) {
	c := testSet.New()
	for range b.N {
		c.Inc(testFull)
	}
}
