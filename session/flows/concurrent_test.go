package flows

import (
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// TestConcurrent adds, touches, updates, deletes and expires from
// several goroutines (run it with -race): every flow added leaves the
// table exactly once, by Delete or by Expire.
func TestConcurrent(t *testing.T) {
	var clkMu sync.Mutex
	clk := newClock()
	now := func() time.Time { clkMu.Lock(); defer clkMu.Unlock(); return clk.t }
	tb, err := New(Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var gone sync.Map
	for g := range 3 {
		wg.Go(func() {
			for i := range 3000 {
				f := flow(session.UDP, g*100000+i)
				if err := tb.Add(f, carrier(session.UDP, 1), StateOpen); err != nil {
					t.Error(err)
					return
				}
				tb.Touch(f)
				tb.Update(f, carrier(session.UDP, 2), StateOpen)
				if i%2 == 0 {
					if e, err := tb.Delete(f); err == nil {
						if _, dup := gone.LoadOrStore(e.Flow, true); dup {
							t.Errorf("%v left twice", e.Flow)
						}
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			clkMu.Lock()
			clk.add(time.Second)
			clkMu.Unlock()
			for _, e := range tb.Expire(nil, 100) {
				if _, dup := gone.LoadOrStore(e.Flow, true); dup {
					t.Errorf("%v left twice", e.Flow)
				}
			}
		}
	})
	wg.Wait()
	clkMu.Lock()
	clk.add(time.Hour)
	clkMu.Unlock()
	for _, e := range tb.Expire(nil, 0) {
		if _, dup := gone.LoadOrStore(e.Flow, true); dup {
			t.Errorf("%v left twice", e.Flow)
		}
	}
	n := 0
	gone.Range(func(any, any) bool { n++; return true })
	if n != 9000 || tb.Len() != 0 {
		t.Fatalf("%d flows left the table of 9000; %d remain", n, tb.Len())
	}
}
