package relay

import (
	"context"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
)

// TestInboundGateBoundsFlood: new flows from thousands of remotes, one
// packet each, at one instant: each remote is within its own offer limit,
// so only the relay-wide budget holds them. The relay offers the site
// the budget's burst and no more, and refuses the rest at the gate
// (inbound-over-budget) without its lock: refusals go on while another
// goroutine holds carriers.mu. A second later the budget has its rate
// back. The site's share is the whole budget here, so what bounds the
// flood is the budget (TestInboundSiteShare: the shares).
func TestInboundGateBoundsFlood(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	c, clk := inboundCarriers(t, e)
	c.inb.gate.rate, c.inb.gate.burst, c.inb.gate.share = 50, 20, 100
	ctx := context.Background()
	send := func(from, n int) {
		for i := from; i < from+n; i++ {
			k, _ := udpTo("2001:db8:5::10", 7000)
			k.Src = floodKey(i)[0]
			c.inbound(ctx, k, []byte("flood"))
		}
	}
	send(0, 20)
	waitIdle(t, c)
	if got := e.offered(); got != 20 {
		t.Fatalf("%d offers for the budget's burst of 20", got)
	}

	// The budget is spent: 3000 more are refused while the lock is held
	// elsewhere.
	c.flows.mu.Lock()
	done := make(chan struct{})
	go func() { send(20, 3000); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.flows.mu.Unlock()
		t.Fatal("flood packets over the budget waited for the relay's lock")
	}
	c.flows.mu.Unlock()
	if got, n := e.offered(), c.countOf("inbound-over-budget"); got != 20 || n != 3000 {
		t.Errorf("spent budget: %d offers (want 20), %d counted inbound-over-budget (want 3000)", got, n)
	}
	clk.add(time.Second)
	send(5000, 100)
	waitIdle(t, c)
	if got := e.offered(); got != 40 {
		t.Errorf("a second later: %d offers, want 20 more (the burst, refilled)", got-20)
	}
	if sp := c.status().(carrierStatus).Slowpath; sp["inbound-over-budget"] != 3080 {
		t.Errorf("status shows %d inbound-over-budget, want 3080", sp["inbound-over-budget"])
	}
}
