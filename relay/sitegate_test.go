package relay

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
)

// TestInboundSiteShare: a flood of new flows toward one site ("home"),
// each from a remote of its own (so each passes its remote's offer
// limit), at one instant, then new flows toward another site ("shop").
// The flood takes home's share of the relay-wide budget (half its
// burst) and no more, counted inbound-over-site-share beyond it, and
// shop's new flows still take the other half: they are offered, up to
// shop's own share, after which the budget is spent (inbound-over-budget).
// A second later, with the flood going on, the same again. Without the shares the flood spends the whole budget and shop's
// flows are refused at the gate (inbound-over-budget).
func TestInboundSiteShare(t *testing.T) {
	home := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	shop := &fakeEdge{site: "shop", id: 2, answer: refuseAll(proto.CodeRefused)}
	c, clk := inboundCarriers(t, home)
	c.inb.edges["shop"] = shop
	c.inb.gate.rate, c.inb.gate.burst = 40, 20 // a share: 20/s, 10 at once
	ctx := context.Background()
	next := 0
	flood := func(n int) {
		for range n {
			k, _ := udpTo("2001:db8:5::10", 7000)
			k.Src = floodKey(next)[0]
			next++
			c.inbound(ctx, k, []byte("flood"))
		}
	}
	// shop's flows: one remote, distinct source ports, within its offer
	// limit (offerBurst).
	port := uint16(6000)
	toShop := func(n int) {
		for range n {
			k, _ := udpTo("2001:db8:5:100::10", 443)
			k.SPort = port
			port++
			c.inbound(ctx, k, []byte("shop"))
		}
	}
	for round := 1; round <= 2; round++ {
		flood(3000)
		waitIdle(t, c)
		toShop(15)
		waitIdle(t, c)
		if h, s := home.offered(), shop.offered(); h != 10*round || s != 10*round {
			t.Errorf("round %d: %d flood flows offered to home (want %d: its share), %d of shop's offered (want %d: its share)",
				round, h, 10*round, s, 10*round)
		}
		if n := c.countOf("inbound-over-site-share"); n != uint64(round*2990) {
			t.Errorf("round %d: %d counted inbound-over-site-share, want %d (the flood beyond home's share)", round, n, round*2990)
		}
		if n := c.countOf("inbound-over-budget"); n != uint64(round*5) {
			t.Errorf("round %d: %d counted inbound-over-budget, want %d (shop's flows once the two shares spent the budget)", round, n, round*5)
		}
		clk.add(time.Second)
	}
}

// TestInboundSiteShareTakesBoth: a new flow takes a token from its site's
// share and from the relay-wide budget, or from neither. Shares are 75%
// here (15 of the budget's 20 at once). The gate before any lock
// (admitNew) only looks; the tokens are taken under the lock (admit), so
// the test also calls admit itself for flows that passed the gate a
// moment before others spent what they need, as the slow path does.
// Home takes its 15; 100 more of home's are refused by its share
// (inbound-over-site-share) and must not spend the budget: shop still
// gets its 5, which spends the budget. 100 more of shop's are refused by
// the budget (inbound-over-budget) and must not spend shop's share: a
// quarter of a second later the budget has 10 tokens back and shop,
// whose share is full again, gets all 10 offered (7 if the refused flows
// had spent its share).
func TestInboundSiteShareTakesBoth(t *testing.T) {
	home := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	shop := &fakeEdge{site: "shop", id: 2, answer: refuseAll(proto.CodeRefused)}
	c, clk := inboundCarriers(t, home)
	c.inb.edges["shop"] = shop
	c.inb.gate.rate, c.inb.gate.burst, c.inb.gate.share = 40, 20, 75
	ctx := context.Background()
	next := 0
	send := func(host string, n int) {
		for range n {
			k, _ := udpTo(host, 7000)
			k.Src = floodKey(next)[0]
			next++
			c.inbound(ctx, k, []byte("new"))
		}
	}
	admit := func(host string, ss edgeSide, n int) {
		for range n {
			k, f := udpTo(host, 7000)
			f.Remote = netip.AddrPortFrom(floodKey(next)[0], k.SPort)
			next++
			if released, _, _ := c.inb.admit(f, ss, c.sites.gates[ss.Site()], nil, []byte("new"), clk.now()); released != nil {
				t.Fatalf("a flow to %s offered over its share or the budget", ss.Site())
			}
		}
	}
	send("2001:db8:5::10", 30)
	waitIdle(t, c)
	admit("2001:db8:5::10", home, 100)
	if h, over := home.offered(), c.countOf("inbound-over-site-share"); h != 15 || over != 115 {
		t.Fatalf("%d offered to home (want 15: its share), %d counted inbound-over-site-share (want 115)", h, over)
	}
	send("2001:db8:5:100::10", 5)
	waitIdle(t, c)
	if s := shop.offered(); s != 5 {
		t.Fatalf("%d of shop's flows offered, want 5 (the rest of the budget, which home's refused flows did not spend)", s)
	}
	admit("2001:db8:5:100::10", shop, 100)
	if over := c.countOf("inbound-over-budget"); over != 100 {
		t.Fatalf("%d counted inbound-over-budget, want 100", over)
	}
	clk.add(250 * time.Millisecond)
	send("2001:db8:5:100::10", 20)
	waitIdle(t, c)
	if s := shop.offered() - 5; s != 10 {
		t.Errorf("a quarter second later, %d more of shop's flows offered, want 10 (the budget's refill; its share untouched by refusals)", s)
	}
}

// TestInboundPendingFullSpendsNoToken: a flow refused because its site
// has no free offer slot (inbound-pending-full) spends no token of the
// budget or of the site's share. Home's 2 slots are taken by flows held
// for their offers; 10 more are refused for want of a slot; with room
// for more offers, 18 of 30 new flows then pass (the burst of 20 less
// the 2 that took slots), not 8.
func TestInboundPendingFullSpendsNoToken(t *testing.T) {
	home := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	c, clk := inboundCarriers(t, home)
	c.inb.gate.rate, c.inb.gate.burst, c.inb.gate.share = 40, 20, 100
	c.inb.maxPending = 2
	next := 0
	admit := func(n int) (passed int) {
		for range n {
			k, f := udpTo("2001:db8:5::10", 7000)
			f.Remote = netip.AddrPortFrom(floodKey(next)[0], k.SPort)
			next++
			if released, _, _ := c.inb.admit(f, home, c.sites.gates["home"], nil, []byte("new"), clk.now()); released != nil {
				passed++
			}
		}
		return passed
	}
	if n := admit(12); n != 2 {
		t.Fatalf("%d flows took home's 2 offer slots", n)
	}
	if n := c.countOf("inbound-pending-full"); n != 10 {
		t.Fatalf("%d counted inbound-pending-full, want 10", n)
	}
	c.inb.maxPending = 100
	if n := admit(30); n != 18 {
		t.Errorf("%d of 30 new flows passed after the refusals, want 18: the refused flows spent tokens", n)
	}
}
