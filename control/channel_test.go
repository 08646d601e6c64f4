package control

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

func TestHandshakeOpenClose(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), edge)

	w := waitConnected(t, c)
	pfx, v4 := sitePrefix("home-1")
	if w.Prefix != pfx || w.PublicIPv4 != v4 || w.SessionID == 0 || w.Timers.TCPEstablishedSec != 7440 {
		t.Errorf("welcome = %+v", w)
	}
	if !w.Capabilities.Has(proto.CapTCPOffer | proto.CapCounters) {
		t.Errorf("capabilities %b", w.Capabilities)
	}
	ss := recvWithin(t, relay.started, "session start")
	if ss.Site() != "home-1" || ss.ID() != w.SessionID {
		t.Errorf("relay session site %q id %d", ss.Site(), ss.ID())
	}
	recvWithin(t, relay.replays, "empty replay")

	ctx := context.Background()
	fl := testFlow("home-1", 1)
	g, err := openFlow(ctx, c, edge, fl, 1)
	if err != nil {
		t.Fatal(err)
	}
	if g.Result != proto.CodeOK || g.Relay != netip.MustParseAddrPort("198.51.100.6:20000") || g.LifetimeSec != 7440 {
		t.Errorf("grant = %+v", g)
	}
	if relay.nflows() != 1 {
		t.Errorf("relay has %d flows", relay.nflows())
	}
	if err := c.Close(fl, proto.CodeClosed); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, srv.Counters(), "flows_closed", 1)
	if relay.nflows() != 0 {
		t.Errorf("flow not removed at the relay")
	}
	if srv.Counters().Get("flows_opened") != 1 || srv.Counters().Get("sessions_started") != 1 {
		t.Errorf("counters %v", srv.Counters().Snapshot())
	}
}

func TestFlowRefusals(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	relay.quota = 1
	srv := startRelay(t, p, relay, "")
	c := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge())
	waitConnected(t, c)
	ctx := context.Background()

	// A flow from another site's prefix: the relay must not carry it.
	foreign := testFlow("home-2", 1)
	if _, err := openFlow(ctx, c, nil, foreign, 1); !isCode(err, proto.CodeAddressNotGranted) {
		t.Errorf("foreign prefix: err = %v, want address-not-granted", err)
	}
	// Its public IPv4 outside the site's is refused the same way.
	v4 := session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("203.0.113.1:5000"), Remote: netip.MustParseAddrPort("192.0.2.1:53")}
	if _, err := openFlow(ctx, c, nil, v4, 2); !isCode(err, proto.CodeAddressNotGranted) {
		t.Errorf("foreign IPv4: err = %v", err)
	}
	if _, err := openFlow(ctx, c, nil, testFlow("home-1", 3), 3); err != nil {
		t.Fatal(err)
	}
	if _, err := openFlow(ctx, c, nil, testFlow("home-1", 4), 4); !isCode(err, proto.CodeQuotaExceeded) {
		t.Errorf("over quota: err = %v", err)
	}
	sc := srv.Counters()
	if sc.Get("flow_refused_address-not-granted") != 2 || sc.Get("flow_refused_quota-exceeded") != 1 {
		t.Errorf("counters %v", sc.Snapshot())
	}
	if relay.nflows() != 1 {
		t.Errorf("relay holds %d flows, want 1", relay.nflows())
	}
}

// TestSessionRefusals: each refusal has its own error at the edge and its
// own counter at the relay, and the relay keeps serving.
func TestSessionRefusals(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	other := newPKI(t) // another deployment's CA

	expired, err := p.ca.IssueEdge("home-1", pki.Validity{NotBefore: time.Now().Add(-48 * time.Hour), Length: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pfxOther, _ := sitePrefix("home-2")
	cases := []struct {
		name    string
		site    string
		opt     edgeOpt
		want    error
		counter string
	}{
		{"wrong CA", "home-1", func(c *ClientConfig) { c.Identity = other.edge(t, "home-1") }, ErrHandshake, "tls_refused_unknown-ca"},
		{"expired certificate", "home-1", func(c *ClientConfig) { c.Identity = expired.TLS() }, ErrHandshake, "tls_refused_expired"},
		{"unknown site", "unknown-7", nil, proto.CodeUnknownSite, "session_refused_unknown-site"},
		{"another site's prefix", "home-1", func(c *ClientConfig) { c.Hello.WantPrefix = pfxOther }, proto.CodePrefixNotGranted, "session_refused_prefix-not-granted"},
		{"another site's IPv4", "home-1", func(c *ClientConfig) { c.Hello.WantIPv4 = netip.MustParseAddr("203.0.113.77") }, proto.CodeAddressNotGranted, "session_refused_address-not-granted"},
		{"hello names another site", "home-1", func(c *ClientConfig) { c.Hello.Site = "home-2" }, proto.CodeSiteMismatch, "session_refused_site-mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			edge := newFakeEdge()
			opts := []edgeOpt{}
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			startEdge(t, p, tc.site, srv.Addr(), edge, opts...)
			err := recvWithin(t, edge.errs, "refusal")
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			waitCounter(t, srv.Counters(), tc.counter, 1)
		})
	}
	// Distinct: each counter moved for its own case only.
	for _, tc := range cases {
		if n := srv.Counters().Get(tc.counter); n == 0 {
			t.Errorf("%s: counter %s not set", tc.name, tc.counter)
		}
	}
	if srv.Counters().Get("sessions_started") != 0 {
		t.Errorf("a refused edge got a session: %v", srv.Counters().Snapshot())
	}
	// The relay still serves a good edge.
	c := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge())
	waitConnected(t, c)
}

func TestEdgeRefusesUntrustedRelay(t *testing.T) {
	p := newPKI(t)
	srv := startRelay(t, p, newFakeRelay(), "")
	other := newPKI(t)
	edge := newFakeEdge()
	startEdge(t, p, "home-1", srv.Addr(), edge, func(c *ClientConfig) { c.RelayCAs = other.ca.Pool() })
	err := recvWithin(t, edge.errs, "refusal")
	if !errors.Is(err, ErrHandshake) {
		t.Fatalf("err = %v, want ErrHandshake", err)
	}
}

func TestInboundOffers(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) { c.OfferTimeout = 300 * time.Millisecond })
	edge := newFakeEdge()
	block := make(chan struct{})
	defer close(block)
	edge.accept = func(m *proto.FlowOffer) *proto.OfferReply {
		switch {
		case m.Flow.Proto == session.TCP && len(m.SYN) == 40:
			return &proto.OfferReply{Result: proto.CodeOK, EdgePort: 61500, Token: 0xabcdef}
		case m.Flow.Site.Port() == 9: // a LAN host that never answers
			<-block
		}
		return &proto.OfferReply{Result: proto.CodeRefused}
	}
	c := startEdge(t, p, "home-1", srv.Addr(), edge)
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	ctx := context.Background()
	relayR := netip.MustParseAddrPort("198.51.100.6:20100")

	syn := make([]byte, 40)
	syn[12] = 0xa0
	tcp := &proto.FlowOffer{Flow: testFlow("home-1", 1), CarrierProto: session.TCP, Relay: relayR, LifetimeSec: 240, SYN: syn}
	r, err := ss.Offer(ctx, tcp)
	if err != nil || r.EdgePort != 61500 || r.Token != 0xabcdef {
		t.Fatalf("accept: %+v, %v", r, err)
	}
	udp := &proto.FlowOffer{Flow: testFlow("home-1", 2), CarrierProto: session.UDP, Relay: relayR}
	udp.Flow.Proto = session.UDP
	if _, err := ss.Offer(ctx, udp); !isCode(err, proto.CodeRefused) {
		t.Fatalf("refuse: err = %v", err)
	}
	silent := &proto.FlowOffer{Flow: testFlow("home-1", 3), CarrierProto: session.UDP, Relay: relayR}
	silent.Flow.Proto = session.UDP
	silent.Flow.Site = netip.AddrPortFrom(silent.Flow.Site.Addr(), 9)
	if _, err := ss.Offer(ctx, silent); !isCode(err, proto.CodeTimeout) {
		t.Fatalf("unanswered: err = %v", err)
	}
	foreign := &proto.FlowOffer{Flow: testFlow("home-2", 1), CarrierProto: session.TCP, Relay: relayR}
	if _, err := ss.Offer(ctx, foreign); !isCode(err, proto.CodeAddressNotGranted) {
		t.Fatalf("offer outside the grant: err = %v", err)
	}
	sc := srv.Counters()
	if sc.Get("offers_accepted") != 1 || sc.Get("offer_refused_refused") != 1 || sc.Get("offer_refused_timeout") != 1 {
		t.Errorf("counters %v", sc.Snapshot())
	}
	// The session is still good after a timed-out offer.
	if _, err := openFlow(ctx, c, nil, testFlow("home-1", 4), 4); err != nil {
		t.Fatal(err)
	}
}

func TestCarrierBoundAndRelayClose(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), edge)
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	fl := testFlow("home-1", 1)
	pub := netip.MustParseAddrPort("100.64.9.9:40001")
	if err := ss.Bound(&proto.CarrierBound{Flow: fl, Public: pub, Generation: 2}); err != nil {
		t.Fatal(err)
	}
	b := recvWithin(t, edge.bound, "carrier bound")
	if b.Flow != fl || b.Public != pub || b.Generation != 2 {
		t.Errorf("bound = %+v", b)
	}
	if err := ss.CloseFlow(fl, proto.CodeExpired); err != nil {
		t.Fatal(err)
	}
	cl := recvWithin(t, edge.closed, "flow close")
	if cl.Flow != fl || cl.Reason != proto.CodeExpired {
		t.Errorf("close = %+v", cl)
	}
}

func TestPingCarriesCounters(t *testing.T) {
	p := newPKI(t)
	srv := startRelay(t, p, newFakeRelay(), "", func(c *ServerConfig) {
		c.Counters = func(*Session) []proto.Counter { return []proto.Counter{{ID: proto.CounterFlows, Value: 42}} }
	})
	c := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge(), func(c *ClientConfig) {
		c.Keepalive = 50 * time.Millisecond // pings every 200 ms
	})
	waitConnected(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for len(c.RelayCounters()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no pong with counters")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := c.RelayCounters()[0]; got.ID != proto.CounterFlows || got.Value != 42 {
		t.Errorf("counters %+v", got)
	}
}

func TestEdgeShutdownSaysGoodbye(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	c, err := NewClient(ClientConfig{
		Relay: srv.Addr().String(), ServerName: "relay.test", Identity: p.edge(t, "home-1"), RelayCAs: p.ca.Pool(),
		Hello: proto.Hello{Site: "home-1"}, Handler: newFakeEdge(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	waitConnected(t, c)
	cancel()
	if err := recvWithin(t, done, "run to return"); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	if err := recvWithin(t, relay.ended, "session end"); !isCode(err, proto.CodeShutdown) {
		t.Errorf("relay saw the session end with %v, want shutdown", err)
	}
	if srv.Counters().Get("goodbye_shutdown") != 1 {
		t.Errorf("counters %v", srv.Counters().Snapshot())
	}
}

func TestNewSessionReplacesOld(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	c1 := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge())
	w1 := waitConnected(t, c1)
	// A second edge with the same site (a restarted edge whose old
	// connection has not timed out yet) takes over.
	edge2 := newFakeEdge()
	c2 := startEdge(t, p, "home-1", srv.Addr(), edge2)
	w2 := waitConnected(t, c2)
	if w1.SessionID == w2.SessionID {
		t.Fatal("same session id")
	}
	waitCounter(t, srv.Counters(), "sessions_replaced", 1)
	if s := srv.Session("home-1"); s == nil || s.ID() != w2.SessionID {
		t.Errorf("current session is not the newest")
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := NewClient(ClientConfig{}); err == nil {
		t.Error("empty client config accepted")
	}
	p := newPKI(t)
	_, err := NewClient(ClientConfig{Relay: "127.0.0.1:443", Identity: p.edge(t, "a"), RelayCAs: p.ca.Pool(), Handler: newFakeEdge(), Keepalive: 26 * time.Second})
	if err == nil {
		t.Error("keepalive above 25s accepted")
	}
	if _, err := Listen(context.Background(), ServerConfig{}); err == nil {
		t.Error("empty server config accepted")
	}
}

func TestVersionAndCapabilityNegotiation(t *testing.T) {
	p := newPKI(t)
	srv := startRelay(t, p, newFakeRelay(), "")
	// A newer edge (minor version 3) offering one capability the relay
	// grants and one it does not know.
	c := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge(), func(c *ClientConfig) {
		c.Hello.Capabilities = proto.CapTCPOffer | 1<<40
	})
	w := waitConnected(t, c)
	if w.Capabilities != proto.CapTCPOffer {
		t.Errorf("granted %b, want only tcp-offer", w.Capabilities)
	}
	if w.Version != proto.Version {
		t.Errorf("version %d, want %d", w.Version, proto.Version)
	}
}

func TestGoodbyeRetryIsHonoured(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), edge)
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	const retry = 400 * time.Millisecond
	start := time.Now()
	ss.Shutdown(retry, "maintenance")
	err := recvWithin(t, edge.errs, "goodbye")
	if !isCode(err, proto.CodeShutdown) {
		t.Errorf("edge saw %v, want shutdown", err)
	}
	recvWithin(t, relay.started, "reconnect")
	if d := time.Since(start); d < retry {
		t.Errorf("edge came back after %v, before the %v the relay asked for", d, retry)
	}
	if c.Counters().Get("goodbye_shutdown") != 1 {
		t.Errorf("client counters %v", c.Counters().Snapshot())
	}
}

func TestOfferFloodIsBounded(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) { c.OfferTimeout = 2 * time.Second })
	edge := newFakeEdge()
	release := make(chan struct{})
	edge.accept = func(*proto.FlowOffer) *proto.OfferReply { <-release; return nil }
	c := startEdge(t, p, "home-1", srv.Addr(), edge)
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	// Fill every slot with offers the LAN never answers...
	for i := range MaxPendingOffers {
		o := &proto.FlowOffer{Flow: testFlow("home-1", i), CarrierProto: session.TCP, Relay: relayAddr(20000)}
		go ss.Offer(context.Background(), o)
	}
	waitCounter(t, srv.Counters(), "offers_sent", MaxPendingOffers)
	// ...then one more is refused at once, not queued.
	o := &proto.FlowOffer{Flow: testFlow("home-1", 9999), CarrierProto: session.TCP, Relay: relayAddr(20000)}
	if _, err := ss.Offer(context.Background(), o); !isCode(err, proto.CodeNoResources) {
		t.Errorf("offer beyond the bound: %v, want no-resources", err)
	}
	close(release)
	waitCounter(t, c.Counters(), "offer_refused_refused", MaxPendingOffers)
}

// TestEdgeChoosesR: with reserved ranges the edge's pick is checked
// against them before the relay agent sees it.
func TestEdgeChoosesR(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) {
		c.Authorize = func(site string, h *proto.Hello) (*proto.Welcome, error) {
			w, err := grantFor(site, h)
			if err == nil {
				w.Capabilities |= proto.CapEdgeChoosesR
				w.CarrierRanges = []proto.CarrierRange{{Proto: session.TCP, Ports: proto.PortRange{First: 30000, Last: 30099}}}
			}
			return w, err
		}
	})
	c := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge(), func(c *ClientConfig) { c.Hello.Capabilities |= proto.CapEdgeChoosesR })
	w := waitConnected(t, c)
	if !w.Capabilities.Has(proto.CapEdgeChoosesR) {
		t.Fatal("capability not granted")
	}
	ctx := context.Background()
	pick := func(n int, r netip.AddrPort, carrier session.Proto) (*proto.FlowGrant, error) {
		return c.Open(ctx, &proto.FlowOpen{Flow: testFlow("home-1", n), CarrierProto: carrier, EdgePort: 61000, Relay: r})
	}
	g, err := pick(1, relayAddr(30005), session.TCP)
	if err != nil || g.Relay != relayAddr(30005) {
		t.Fatalf("pick inside the range: %+v, %v", g, err)
	}
	// A relay agent that grants another R than the pick: the server must
	// not let that grant through.
	relay.mu.Lock()
	relay.badPicks = true
	relay.mu.Unlock()
	if _, err := pick(3, relayAddr(30006), session.TCP); !isCode(err, proto.CodeInternal) {
		t.Errorf("grant of another R than the pick: err = %v, want internal", err)
	}
	for _, bad := range []struct {
		r       netip.AddrPort
		carrier session.Proto
	}{
		{relayAddr(30100), session.TCP},                               // outside the range
		{netip.MustParseAddrPort("198.51.100.99:30005"), session.TCP}, // not a relay address
		{relayAddr(30005), session.UDP},                               // no UDP range reserved
	} {
		if _, err := pick(2, bad.r, bad.carrier); !isCode(err, proto.CodeAddressNotGranted) {
			t.Errorf("pick %v/%v: err = %v, want address-not-granted", bad.r, bad.carrier, err)
		}
	}
	if n := srv.Counters().Get("flow_refused_address-not-granted"); n != 3 {
		t.Errorf("counter = %d, want 3", n)
	}
}
