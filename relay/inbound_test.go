package relay

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// fakeEdge is a site's session without a control channel: it answers
// offers with answer (or, when hold is set, not before ctx ends) and
// records what it was told.
type fakeEdge struct {
	site   string
	id     uint64
	answer func(m *proto.FlowOffer) *proto.OfferReply
	hold   chan struct{} // when not nil, offers wait for it (or ctx) to close

	mu     sync.Mutex
	offers []session.Flow
	closed map[session.Flow]proto.Code
}

func (e *fakeEdge) Site() string         { return e.site }
func (e *fakeEdge) ID() uint64           { return e.id }
func (e *fakeEdge) RemoteAddr() net.Addr { return &net.UDPAddr{IP: cgnPublic.AsSlice(), Port: 4433} }

func (e *fakeEdge) Offer(ctx context.Context, m *proto.FlowOffer) (*proto.OfferReply, error) {
	e.mu.Lock()
	e.offers = append(e.offers, m.Flow)
	e.mu.Unlock()
	if e.hold != nil {
		select {
		case <-e.hold:
		case <-ctx.Done():
			return nil, proto.CodeTimeout
		}
	}
	r := e.answer(m)
	if r.Result != proto.CodeOK {
		return r, r.Result
	}
	return r, nil
}

func (e *fakeEdge) CloseFlow(f session.Flow, reason proto.Code) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed == nil {
		e.closed = map[session.Flow]proto.Code{}
	}
	e.closed[f] = reason
	return nil
}

func (e *fakeEdge) offered() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.offers)
}

func refuseAll(code proto.Code) func(*proto.FlowOffer) *proto.OfferReply {
	return func(*proto.FlowOffer) *proto.OfferReply { return &proto.OfferReply{Result: code} }
}

// clock is a time the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (k *clock) now() time.Time { k.mu.Lock(); defer k.mu.Unlock(); return k.t }
func (k *clock) add(d time.Duration) {
	k.mu.Lock()
	k.t = k.t.Add(d)
	k.mu.Unlock()
}

// exampleCarriers is a relay without a datapath, configured by the
// example relay.yaml.
func exampleCarriers(t *testing.T) *agent {
	t.Helper()
	s, err := Load("../examples/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := newAgent(s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// inboundCarriers is a relay without a datapath whose site "home" has
// the fake session e, on a clock the test moves.
func inboundCarriers(t *testing.T, e *fakeEdge) (*agent, *clock) {
	t.Helper()
	c := exampleCarriers(t)
	k := &clock{t: time.Unix(1_000_000, 0)}
	c.now = k.now
	c.inb.edges = map[string]edgeSide{"home": e}
	return c, k
}

// udpTo is the key of a UDP packet from the remote to port of the site
// host.
func udpTo(host string, port uint16) (xlat.Key, session.Flow) {
	k := xlat.Key{Proto: uint8(session.UDP), Src: netip.MustParseAddr("2001:db8:6::2"), Dst: netip.MustParseAddr(host), SPort: 5000, DPort: port}
	return k, session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(k.Dst, k.DPort), Remote: netip.AddrPortFrom(k.Src, k.SPort)}
}

// waitIdle waits until no offer is out and no packet held.
func waitIdle(t *testing.T, c *agent) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.inb.mu.Lock()
		idle := len(c.inb.pending) == 0 && len(c.inb.held) == 0 && len(c.inb.done) == 0
		c.inb.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("offers still out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (c *agent) countOf(name string) uint64 {
	return c.m.Snapshot()[name]
}

// TestInboundRefusedCached: a flow the edge refused is offered once per
// TTL however many packets come, each counted; another flow, the end of
// the TTL, or a new session offer again; a refusal that may not hold (no
// port free) is not remembered.
func TestInboundRefusedCached(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	c, clk := inboundCarriers(t, e)
	ctx := context.Background()
	k1, f1 := udpTo("2001:db8:5::10", 7000)
	c.inbound(ctx, k1, []byte("first"))
	waitIdle(t, c)
	for range 4 {
		c.inbound(ctx, k1, []byte("again"))
	}
	if got := e.offered(); got != 1 {
		t.Fatalf("%d offers for one refused flow, want 1", got)
	}
	if c.countOf("inbound-refused-cached") != 4 || c.countOf("inbound-refused") != 1 {
		t.Errorf("counts %v", c.m.Snapshot())
	}
	// 20 more flows (ports and addresses), 3 packets each: one offer each.
	for i := range 20 {
		k, _ := udpTo(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 5, 15: byte(i + 1)}).String(), uint16(8000+i))
		c.inbound(ctx, k, []byte("x"))
		waitIdle(t, c)
		c.inbound(ctx, k, []byte("x"))
		c.inbound(ctx, k, []byte("x"))
	}
	if got := e.offered(); got != 21 {
		t.Errorf("%d offers for 21 refused flows, want 21", got)
	}
	// Their relay port carried nothing: offered again, not quarantined.
	if st := c.ports.Stats(); st.Granted != 1 || c.countOf("inbound-port-reused") != 20 {
		t.Errorf("21 refused offers took %d ports from the allocator; counts %v", st.Granted, c.m.Snapshot())
	}
	if st := c.inboundStatus().(inboundStatus); st.Refused != 21 || len(st.Pending) != 0 {
		t.Errorf("status %+v", st)
	}
	// Past the TTL: asked again.
	clk.add(refusedTTL)
	c.inbound(ctx, k1, []byte("later"))
	waitIdle(t, c)
	if got := e.offered(); got != 22 {
		t.Errorf("after the TTL: %d offers, want 22", got)
	}
	// A new session may have a new policy: asked again.
	e.mu.Lock()
	e.id = 2
	e.mu.Unlock()
	c.inbound(ctx, k1, []byte("new session"))
	waitIdle(t, c)
	if got := e.offered(); got != 23 || e.offers[22] != f1 {
		t.Errorf("after a new session: %d offers, want 23", got)
	}
	// No port free at the edge: that may change at once, not remembered.
	e.answer = refuseAll(proto.CodeNoResources)
	k2, _ := udpTo("2001:db8:5::10", 9000)
	for range 2 {
		c.inbound(ctx, k2, []byte("x"))
		waitIdle(t, c)
	}
	if got := e.offered(); got != 25 {
		t.Errorf("a transient refusal remembered: %d offers, want 25", got)
	}
}

// TestInboundTCPClosedCached: a SYN the host reset is remembered; the
// remote's next SYN is not offered (the relay resets it itself).
func TestInboundTCPClosedCached(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeClosed)}
	c, _ := inboundCarriers(t, e)
	k := xlat.Key{Proto: 6, Src: tcpFlow.Remote.Addr(), Dst: tcpFlow.Site.Addr(), SPort: tcpFlow.Remote.Port(), DPort: tcpFlow.Site.Port()}
	syn := frameOf(t, tcpFlow.Remote.Addr(), tcpFlow.Site.Addr(), remoteSYN)
	c.inbound(context.Background(), k, syn)
	waitIdle(t, c)
	c.inbound(context.Background(), k, syn)
	if e.offered() != 1 || c.countOf("inbound-refused-cached") != 1 || c.countOf("inbound-tcp-refused") != 1 {
		t.Errorf("%d offers, counts %v", e.offered(), c.m.Snapshot())
	}
}

// TestInboundPendingBound: a site has at most maxPendingPerSite offers
// out; more flows are counted and dropped, packets held across them are
// bounded in all, and all of it is given back when the offers end.
func TestInboundPendingBound(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused), hold: make(chan struct{})}
	c, clk := inboundCarriers(t, e)
	c.inb.maxHeld = 100
	c.inb.offers.Rate, c.inb.offers.Burst = 1, 1000 // one remote here: its offer limit is another test's
	ctx := context.Background()
	before := c.ports.Stats().InUse
	keys := make([]xlat.Key, maxPendingPerSite+5)
	for i := range keys {
		keys[i], _ = udpTo("2001:db8:5::10", uint16(10000+i))
		c.inbound(ctx, keys[i], []byte("x"))
	}
	if n := c.countOf("inbound-pending-full"); n != 5 {
		t.Errorf("inbound-pending-full %d, want 5", n)
	}
	for i := range maxPendingPerSite {
		for range maxHeld + 2 {
			c.inbound(ctx, keys[i], []byte("y"))
		}
	}
	c.inb.mu.Lock()
	n := 0
	for _, h := range c.inb.held {
		n += len(h)
		if len(h) > maxHeld {
			t.Errorf("a flow holds %d packets", len(h))
		}
	}
	heldN, pending := c.inb.heldN, c.inb.pending["home"]
	c.inb.mu.Unlock()
	if n != 100 || heldN != 100 || pending != maxPendingPerSite || c.countOf("inbound-held-full") == 0 {
		t.Errorf("held %d (counted %d), pending %d, counts %v", n, heldN, pending, c.m.Snapshot())
	}
	// Another site is not held up by this one's offers (no session: counted).
	ks, _ := udpTo("2001:db8:5:100::10", 7)
	c.inbound(ctx, ks, []byte("z"))
	if c.countOf("inbound-no-session") != 1 {
		t.Errorf("counts %v", c.m.Snapshot())
	}
	for e.offered() < maxPendingPerSite {
		time.Sleep(time.Millisecond)
	}
	if got := c.ports.Stats().InUse; got != before+maxPendingPerSite {
		t.Errorf("offers out: ports in use %d, want %d", got, before+maxPendingPerSite)
	}
	close(e.hold)
	waitIdle(t, c)
	// The refused offers' ports carried nothing: a few are kept for the
	// next offers, the rest go back; the kept ones go after spareIdle.
	if got := c.ports.Stats().InUse; got != before+sparePerSite || c.inb.heldN != 0 || c.countOf("inbound-refused") != 100 {
		t.Errorf("after the offers: ports in use %d (want %d), held %d, counts %v", got, before+sparePerSite, c.inb.heldN, c.m.Snapshot())
	}
	// Slots free again.
	k, _ := udpTo("2001:db8:5::10", 20000)
	c.inbound(ctx, k, []byte("x"))
	waitIdle(t, c)
	if got := e.offered(); got != maxPendingPerSite+1 || c.countOf("inbound-port-reused") != 1 {
		t.Errorf("%d offers, want %d; counts %v", got, maxPendingPerSite+1, c.m.Snapshot())
	}
	clk.add(spareIdle)
	c.sweep()
	if got := c.ports.Stats().InUse; got != before {
		t.Errorf("after %v: ports in use %d, want %d", spareIdle, got, before)
	}
}

// TestInboundOfferRate: one remote (an IPv6 /64) gets offerBurst of its
// new flows offered to a site at once and offerRate a second after that;
// the rest are counted and dropped. Another remote is not held up by it.
func TestInboundOfferRate(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	c, clk := inboundCarriers(t, e)
	ctx := context.Background()
	from := func(remote string, port uint16) xlat.Key {
		k, _ := udpTo("2001:db8:5::10", port)
		k.Src = netip.MustParseAddr(remote)
		return k
	}
	port := uint16(10000)
	burst := func(remote string, n int) {
		for range n {
			c.inbound(ctx, from(remote, port), []byte("x"))
			port++
			waitIdle(t, c)
		}
	}
	burst("2001:db8:6::2", offerBurst+5)
	burst("2001:db8:6::3", 3) // the same /64
	if got, n := e.offered(), c.countOf("inbound-offer-rate"); got != offerBurst || n != 8 {
		t.Errorf("one /64's flood: %d offers (want %d), %d counted inbound-offer-rate (want 8)", got, offerBurst, n)
	}
	burst("2001:db8:7::2", 1)
	burst("198.51.100.7", 1)
	if got := e.offered(); got != offerBurst+2 {
		t.Errorf("other remotes' flows held up: %d offers, want %d", got, offerBurst+2)
	}
	clk.add(time.Second)
	burst("2001:db8:6::2", offerRate+5)
	if got := e.offered(); got != offerBurst+2+offerRate {
		t.Errorf("a second later: %d offers, want %d", got, offerBurst+2+offerRate)
	}
}

// TestInboundUDPNotOpenedReleased: an accepted UDP offer whose opener
// never comes gives its carrier and port back when its setup time ends,
// and the edge is told; one whose opener comes keeps its carrier and
// frees its offer slot.
func TestInboundUDPNotOpenedReleased(t *testing.T) {
	e := &fakeEdge{site: "home", id: 1, answer: func(*proto.FlowOffer) *proto.OfferReply {
		return &proto.OfferReply{EdgePort: 61000, Token: 7}
	}}
	c, _ := inboundCarriers(t, e)
	c.inb.setup = 100 * time.Millisecond
	before := c.ports.Stats().InUse
	k, f := udpTo("2001:db8:5::10", 7000)
	c.inbound(context.Background(), k, []byte("x"))
	waitIdle(t, c)
	e.mu.Lock()
	closed := e.closed[f]
	e.mu.Unlock()
	if c.flows.len() != 0 || len(c.flows.byLease) != 0 || c.ports.Stats().InUse != before || closed != proto.CodeTimeout {
		t.Errorf("left behind: flows %v, leases %v, ports in use %d (want %d), edge told %v", c.flows.all(), c.flows.byLease, c.ports.Stats().InUse, before, closed)
	}
	if c.countOf("inbound-not-opened") != 1 {
		t.Errorf("counts %v", c.m.Snapshot())
	}

	c.inb.setup = 5 * time.Second
	k, f = udpTo("2001:db8:5::10", 7001)
	c.inbound(context.Background(), k, []byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.flows.mu.Lock()
		kc := c.flows.get(f)
		c.flows.mu.Unlock()
		if kc != nil {
			c.release(nil, f, kc.carrier()) // what the opener's bind does
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("offer not accepted")
		}
		time.Sleep(time.Millisecond)
	}
	waitIdle(t, c)
	if c.flows.len() != 1 || c.ports.Stats().InUse != before+1 {
		t.Errorf("an opened flow: flows %v, ports in use %d", c.flows.all(), c.ports.Stats().InUse)
	}
}

// TestRefusedCacheBounded: the cache holds at most refusedMax flows,
// pushing out the oldest (counted), and forgets a refusal after its TTL.
func TestRefusedCacheBounded(t *testing.T) {
	var r refusedCache
	now := time.Unix(1_000_000, 0)
	flow := func(i int) session.Flow {
		_, f := udpTo("2001:db8:5::10", uint16(i))
		return f
	}
	evicted := 0
	for i := range refusedMax + 10 {
		evicted += r.add(flow(i), 1, proto.CodeRefused, now)
	}
	if r.len() != refusedMax || evicted != 10 || len(r.queue) != refusedMax {
		t.Errorf("%d remembered (queue %d), %d evicted", r.len(), len(r.queue), evicted)
	}
	if _, ok := r.get(flow(0), 1, now); ok {
		t.Error("the oldest refusal kept")
	}
	if c, ok := r.get(flow(refusedMax+9), 1, now); !ok || c != proto.CodeRefused {
		t.Error("the newest refusal lost")
	}
	if _, ok := r.get(flow(refusedMax+9), 2, now); ok {
		t.Error("another session's refusal used")
	}
	later := now.Add(refusedTTL)
	if _, ok := r.get(flow(refusedMax+9), 1, later); ok {
		t.Error("a refusal kept past its TTL")
	}
	// Expired refusals go as new ones come, not counted as pushed out.
	if n := r.add(flow(1), 1, proto.CodeRefused, later); n != 0 || r.len() != 1 || len(r.queue) != 1 {
		t.Errorf("after the TTL: %d evicted, %d remembered, queue %d", n, r.len(), len(r.queue))
	}
}
