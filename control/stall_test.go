package control

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// TestStalledEdgeDoesNotBlockOthers: an authenticated edge over real QUIC
// says Hello and then never reads its stream. One goroutine, as the
// relay's miss loop does, sends it ICMP errors and CarrierBound messages,
// more than QUIC's flow control window and the session's queue hold, and
// after each batch a CarrierBound to a good edge. The good edge must get
// every one within a deadline (before the send queues, the first write
// past the stalled edge's window blocked the goroutine for good); the
// stalled session is closed for not reading, counted, and an offer to it
// returns instead of waiting on the stream.
func TestStalledEdgeDoesNotBlockOthers(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) {
		c.SendTimeout = 500 * time.Millisecond
		c.OfferTimeout = 300 * time.Millisecond
	})
	good := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), good)
	waitConnected(t, c)
	recvWithin(t, relay.started, "the good session")

	bad := dialRaw(t, p, "stalled", srv.Addr())
	bad.hello(t, "stalled") // reads the Welcome, then nothing more
	stalled := recvWithin(t, relay.started, "the stalled session")
	goodSS := srv.Session("home-1")

	// One goroutine sends to both, as the relay's miss loop would.
	icmp := make([]byte, proto.MaxICMPErrorLen)
	loop := make(chan error, 1)
	const rounds = 40 // 40 × 100 × 1280 bytes: 5 MB, ten times the window
	go func() {
		for r := range rounds {
			for i := range 100 {
				stalled.ICMPError(icmp)
				stalled.Bound(&proto.CarrierBound{Flow: testFlow("stalled", i), Public: netip.MustParseAddrPort("100.64.0.1:4000")})
			}
			if err := goodSS.Bound(&proto.CarrierBound{Flow: testFlow("home-1", r), Public: netip.MustParseAddrPort("100.64.0.2:4000")}); err != nil {
				loop <- err
				return
			}
		}
		loop <- nil
	}()
	deadline := time.After(5 * time.Second)
	for r := range rounds {
		select {
		case b := <-good.bound:
			if b.Flow != testFlow("home-1", r) {
				t.Fatalf("good edge got bound %v, want round %d's", b.Flow, r)
			}
		case <-deadline:
			t.Fatalf("the good edge got %d of %d CarrierBound in 5 s: the sender is stuck on the stalled edge", r, rounds)
		}
	}
	if err := <-loop; err != nil {
		t.Fatalf("sending to the good edge: %v", err)
	}

	select {
	case <-stalled.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled session was not closed")
	}
	cs := srv.Counters()
	if cs.Get("send_queue_full")+cs.Get("send_stalled") == 0 || cs.Get("conn_closed_timeout") == 0 {
		t.Errorf("stall not counted: %v", cs.Snapshot())
	}
	t.Logf("relay counters: send_queue_full %d, send_stalled %d, send_dropped_icmp-error %d, icmp_errors_sent %d",
		cs.Get("send_queue_full"), cs.Get("send_stalled"), cs.Get("send_dropped_icmp-error"), cs.Get("icmp_errors_sent"))
	if err := stalled.Bound(&proto.CarrierBound{}); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("Bound on the closed session: %v, want ErrSessionEnded", err)
	}
}

// TestOfferToStalledEdgeTimesOut: an offer to an edge that stopped
// reading returns after the offer timeout, whatever the stream's state:
// the offer waits for its answer, never for the write.
func TestOfferToStalledEdgeTimesOut(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) {
		c.SendTimeout = time.Minute // the stream stays stuck throughout
		c.SendQueue = 1 << 20
		c.OfferTimeout = 300 * time.Millisecond
	})
	bad := dialRaw(t, p, "stalled", srv.Addr())
	bad.hello(t, "stalled")
	stalled := recvWithin(t, relay.started, "the stalled session")
	// Fill the stream's flow control window, and some of the queue.
	icmp := make([]byte, proto.MaxICMPErrorLen)
	for range 600 {
		stalled.ICMPError(icmp)
	}
	pfx, _ := sitePrefix("stalled")
	f := session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(pfx.Addr().Next(), 53), Remote: netip.MustParseAddrPort("[2001:db8:ffff::1]:5353")}
	start := time.Now()
	_, err := stalled.Offer(context.Background(), &proto.FlowOffer{Flow: f, CarrierProto: session.UDP, Relay: relayAddr(20000)})
	if took := time.Since(start); !isCode(err, proto.CodeTimeout) || took > 2*time.Second {
		t.Fatalf("offer to a stalled edge: %v after %v, want timeout after 300 ms", err, took)
	}
}

// TestReplayThrottled: an edge that ends replay after replay (each a
// 6-byte Replay with last, each making the relay walk the site's flows)
// gets them taken one per replayEvery: the first at once, the next ones
// spaced, counted; only its own session waits.
func TestReplayThrottled(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	const every = 300 * time.Millisecond
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) { c.replayEvery = every })
	r := dialRaw(t, p, "home-1", srv.Addr())
	r.hello(t, "home-1")
	for range 3 {
		if err := proto.WriteMessage(r.str, &proto.Replay{Last: true}); err != nil {
			t.Fatal(err)
		}
	}
	var at []time.Time
	r.str.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(at) < 3 {
		m, err := proto.ReadMessage(r.str, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*proto.ReplayDone); ok {
			at = append(at, time.Now())
		}
	}
	for i := 1; i < 3; i++ {
		if gap := at[i].Sub(at[i-1]); gap < every-50*time.Millisecond {
			t.Errorf("replay %d ended %v after the one before, want ≥ %v", i+1, gap, every)
		}
	}
	if n := srv.Counters().Get("replay_throttled"); n != 2 {
		t.Errorf("replay_throttled = %d, want 2", n)
	}
}
