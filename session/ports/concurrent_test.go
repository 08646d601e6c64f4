package ports

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/unmap-dev/unmap/session"
)

// TestRelayConcurrent grants and releases from several goroutines (run
// it with -race) and checks no port is held twice and all come back.
func TestRelayConcurrent(t *testing.T) {
	r := newTestRelay(t, RelayConfig{Addrs: []netip.Addr{relayA}, Ports: Range{20000, 20199}, Quarantine: -1})
	r.SetSite("home", 1<<20)
	var mu sync.Mutex
	held := map[Lease]bool{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			pub := netip.AddrFrom4([4]byte{100, 64, 0, byte(g % 2)}) // two goroutines share each key
			var mine []Lease
			for i := range 5000 {
				if len(mine) > 40 || (i%3 == 0 && len(mine) > 0) {
					l := mine[0]
					mine = mine[1:]
					mu.Lock()
					delete(held, l)
					mu.Unlock()
					if err := r.Release(l); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				l, err := r.Grant("home", pub, session.UDP)
				if err != nil {
					continue // exhausted while others hold ports: allowed
				}
				mu.Lock()
				if held[l] {
					t.Errorf("%v:%d granted twice", l.Public, l.Port)
				}
				held[l] = true
				mu.Unlock()
				mine = append(mine, l)
			}
			for _, l := range mine {
				mu.Lock()
				delete(held, l)
				mu.Unlock()
				r.Release(l)
			}
		})
	}
	wg.Wait()
	if s := r.Stats(); s.InUse != 0 || s.Granted != s.Released || r.Held("home") != 0 {
		t.Fatalf("after: %+v held %d", s, r.Held("home"))
	}
}
