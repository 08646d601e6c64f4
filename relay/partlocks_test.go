package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
)

// TestSlowFlowWorkDoesNotDelayOffersOrPongs: the point of the relay's
// parts having their own locks. The end of a replay that drops 100000
// flows holds the flow registry's lock for the whole walk; meanwhile a
// new inbound flow is admitted and held for its offer (the inbound
// offers' lock, the sessions' lock) and a site's Pong counters are read
// (the sessions' lock), neither of which needs the registry. Each call's
// time, which is its wait for a lock, must stay a small part of the
// replay's hold. Before the split every one of these took the relay's
// one lock and waited for the rest of the walk.
func TestSlowFlowWorkDoesNotDelayOffersOrPongs(t *testing.T) {
	c := manySites(t, 2, 200_000) // site-0 and site-1, 100000 flows each, of session 1
	now := time.Unix(1_000_000, 0)
	c.now = func() time.Time { return now }
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	c.inb.edges = map[string]edgeSide{"home": e}
	k, _ := udpTo("2001:db8:5::10", 7000)
	ctx := context.Background()

	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		c.replayDone(&fakeEdge{site: "site-0", id: 2}) // session 2 replayed none of site-0's flows
		done <- time.Since(start)
	}()
	// Until the replay's end holds the registry's lock.
	for deadline := time.Now().Add(5 * time.Second); c.flows.mu.TryLock(); {
		c.flows.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the replay's end never took the registry's lock")
		}
	}
	// Offers and Pongs each on a goroutine of their own, as the miss
	// loop and the control sessions are, until the replay's end is over.
	var stop atomic.Bool
	var offerMax, pongMax time.Duration
	var offers, pongs int
	var wg sync.WaitGroup
	wg.Go(func() {
		for ; !stop.Load(); offers++ {
			k.Src = floodKey(offers)[0]
			start := time.Now()
			c.inbound(ctx, k, []byte("new flow"))
			offerMax = max(offerMax, time.Since(start))
		}
	})
	wg.Go(func() {
		for ; !stop.Load(); pongs++ {
			start := time.Now()
			_ = c.siteCounters("home")
			pongMax = max(pongMax, time.Since(start))
		}
	})
	hold := <-done
	stop.Store(true)
	wg.Wait()
	waitIdle(t, c)
	if c.flows.len() != 100_000 {
		t.Fatalf("%d flows left, want site-1's 100000", c.flows.len())
	}
	t.Logf("replay's end held the registry %v; during it %d new inbound flows handled (longest %v) and %d Pongs read (longest %v)",
		hold, offers, offerMax, pongs, pongMax)
	if hold < 20*time.Millisecond {
		t.Fatalf("the replay's end took %v: too short to show a wait (want ≥ 20ms)", hold)
	}
	if e.offered() == 0 {
		t.Errorf("no inbound flow was offered while the registry was held")
	}
	if bound := hold / 4; offerMax > bound || pongMax > bound {
		t.Errorf("longest new inbound offer %v, Pong %v while the registry was held %v: want each under a quarter of the hold (%v)",
			offerMax, pongMax, hold, bound)
	}
}
