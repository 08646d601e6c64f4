package edge

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/handshake"
)

// replayFlows fills a's table with n open flows on carriers, as a site
// that has been running for a while has: each a replay (Snapshot) sends.
func replayFlows(t testing.TB, a *agent, n int) {
	t.Helper()
	for i := range n {
		f := session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::10"), uint16(1024+i%60000)),
			Remote: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:6::2"), uint16(1+i/60000))}
		c := session.Carrier{Proto: session.UDP, Edge: netip.AddrPortFrom(hsWAN, uint16(i)), Relay: netip.AddrPortFrom(hsRelay.Addr(), uint16(20000+i%100))}
		if err := a.flows.Add(f, c, flows.StateOpen); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHandshakeNotBehindReplay: an inbound TCP flow's carrier handshake
// does not wait for a replay. A replay (Snapshot, what the control
// client sends the relay after each reconnect) of a site with 65536
// flows walks them all; with one agent lock for everything, the
// handshake's steps, which take that lock, waited for the whole walk,
// and the relay gives an offer 5 s. Here replays run back to back while
// the relay's SYN/ACK steps of a handshake (handshakeWAN) are timed: a
// step's time is its wait for a lock, its own work being microseconds.
// It must stay far below a replay's time (a tenth of the median, a
// generous bound: before the split the median step took about two
// replays, after it a few microseconds).
func TestHandshakeNotBehindReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a table of 65536 flows")
	}
	a, sent := handshakeAgent(t)
	replayFlows(t, a, 65536)
	// The handshake up to the carrier SYN: the flow waits for the relay.
	replies := make(chan *proto.OfferReply, 1)
	go func() { replies <- a.offerTCP(offerOf(t), hsFlow.Site) }()
	next(t, sent)
	if !a.handshakeLAN(hsFlow, frame(t, hsFlow.Site.Addr(), hsFlow.Remote.Addr(), hostSA)) {
		t.Fatal("the host's SYN/ACK went the ordinary way")
	}
	r := <-replies
	if r == nil || r.Result != proto.CodeOK {
		t.Fatalf("offer reply %+v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sent: // the carrier SYN's resends
			}
		}
	}()

	var mu sync.Mutex
	var replays []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			start := time.Now()
			if n := len(a.Snapshot()); n != 65536 {
				t.Errorf("replay of %d flows, want 65536", n)
				return
			}
			mu.Lock()
			replays = append(replays, time.Since(start))
			mu.Unlock()
		}
	}()
	// A SYN/ACK on the carrier that does not answer ours: the step looks
	// the handshake up by carrier port and counts it.
	stray := frame(t, hsRelay.Addr(), hsWAN, handshake.Segment{SrcPort: hsRelay.Port(), DstPort: r.EdgePort, Seq: 1, Ack: 2, Flags: handshake.SYN | handshake.ACK})
	var steps []time.Duration
	deadline := time.Now().Add(20 * time.Second)
	replayed := func() int { mu.Lock(); defer mu.Unlock(); return len(replays) }
	for (len(steps) < 200 || replayed() < 5) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		start := time.Now()
		if !a.handshakeWAN(stray) {
			t.Fatal("the stray SYN/ACK was not taken")
		}
		steps = append(steps, time.Since(start))
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(replays) < 5 || len(steps) < 50 {
		t.Fatalf("%d replays, %d handshake steps in 20 s", len(replays), len(steps))
	}
	slices.Sort(replays)
	slices.Sort(steps)
	replay := replays[len(replays)/2]
	step, p90, most := steps[len(steps)/2], steps[len(steps)*9/10], steps[len(steps)-1]
	t.Logf("replay of 65536 flows: median %v over %d; handshake step: median %v, p90 %v, max %v over %d (median/replay %s)",
		replay, len(replays), step, p90, most, len(steps), ratio(step, replay))
	if step > replay/10 {
		t.Errorf("the handshake step's median %v waits for the replay (median %v)", step, replay)
	}
	if a.Counts()["handshake-relay-unexpected"] != uint64(len(steps)) {
		t.Errorf("counted %d stray SYN/ACKs, sent %d", a.Counts()["handshake-relay-unexpected"], len(steps))
	}
}

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2g", float64(a)/float64(b)) }
