package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// testPKI is a CA with a relay certificate for the loopback addresses.
type testPKI struct {
	ca    *pki.CA
	relay *pki.Identity
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("test CA", pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := ca.IssueRelay([]string{"relay.test"}, []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, relay: relay}
}

func (p *testPKI) edge(t testing.TB, site string) tls.Certificate {
	t.Helper()
	id, err := p.ca.IssueEdge(site, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	return id.TLS()
}

// sitePrefix gives each test site its own /64 (from a 32-bit hash of its
// name, so 100 sites do not collide) and a public IPv4.
func sitePrefix(site string) (netip.Prefix, netip.Addr) {
	h := fnv.New32a()
	h.Write([]byte(site))
	n := h.Sum32()
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), 64),
		netip.AddrFrom4([4]byte{198, 51, 100, 100 + byte(n%100)})
}

// grantFor is the test relay's site database: sites named "unknown*" are
// not configured.
func grantFor(site string, _ *proto.Hello) (*proto.Welcome, error) {
	if len(site) >= 7 && site[:7] == "unknown" {
		return nil, fmt.Errorf("site %s: %w", site, proto.CodeUnknownSite)
	}
	pfx, v4 := sitePrefix(site)
	return &proto.Welcome{
		Capabilities: proto.CapIPv4Public | proto.CapTCPOffer | proto.CapCounters | proto.CapRebind,
		Prefix:       pfx,
		PublicIPv4:   v4,
		Timers:       proto.Timers{KeepaliveMS: 15000, CarrierKeepaliveMS: 20000, UDPSec: 300, TCPEstablishedSec: 7440, TCPTransitorySec: 240, ICMPSec: 60},
		RelayAddrs:   []netip.Addr{netip.MustParseAddr("198.51.100.6")},
		CarrierRanges: []proto.CarrierRange{
			{Proto: session.TCP, Ports: proto.PortRange{First: 20000, Last: 29999}},
			{Proto: session.UDP, Ports: proto.PortRange{First: 20000, Last: 29999}},
		},
	}, nil
}

// fakeRelay is a relay agent: a flow table and a port counter.
type fakeRelay struct {
	mu       sync.Mutex
	flows    map[session.Flow]uint16
	nextPort uint16
	quota    int  // 0: none
	badPicks bool // grant its own R even when the edge picked one (a bug)
	closed   []proto.FlowClose
	replayed []proto.ReplayEntry
	started  chan *Session
	ended    chan error
	replays  chan *Session
}

func newFakeRelay() *fakeRelay {
	return &fakeRelay{
		flows: map[session.Flow]uint16{}, nextPort: 20000,
		started: make(chan *Session, 100), ended: make(chan error, 100), replays: make(chan *Session, 100),
	}
}

func (f *fakeRelay) Started(s *Session) { f.started <- s }

func (f *fakeRelay) Open(s *Session, m *proto.FlowOpen) *proto.FlowGrant {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quota > 0 && len(f.flows) >= f.quota {
		return &proto.FlowGrant{Result: proto.CodeQuotaExceeded}
	}
	r, ok := f.flows[m.Flow]
	switch {
	case m.Relay.IsValid() && !f.badPicks:
		r = m.Relay.Port()
	case !ok:
		r = f.nextPort
		f.nextPort++
	}
	f.flows[m.Flow] = r
	return &proto.FlowGrant{Result: proto.CodeOK, Relay: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.6"), r), LifetimeSec: m.LifetimeSec}
}

func (f *fakeRelay) Replayed(s *Session, e *proto.ReplayEntry) proto.Code {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replayed = append(f.replayed, *e)
	f.flows[e.Flow] = e.Relay.Port()
	return proto.CodeOK
}

func (f *fakeRelay) ReplayDone(s *Session) { f.replays <- s }

func (f *fakeRelay) Closed(s *Session, m *proto.FlowClose) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.flows, m.Flow)
	f.closed = append(f.closed, *m)
}

func (f *fakeRelay) Ended(s *Session, err error) { f.ended <- err }

func (f *fakeRelay) nflows() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flows)
}

// fakeEdge is an edge agent: its flow table is what it replays.
type fakeEdge struct {
	mu       sync.Mutex
	flows    map[session.Flow]proto.ReplayEntry
	accept   func(*proto.FlowOffer) *proto.OfferReply
	welcomes chan *proto.Welcome
	errs     chan error
	closed   chan *proto.FlowClose
	bound    chan *proto.CarrierBound
}

func newFakeEdge() *fakeEdge {
	return &fakeEdge{
		flows:    map[session.Flow]proto.ReplayEntry{},
		welcomes: make(chan *proto.Welcome, 100), errs: make(chan error, 100),
		closed: make(chan *proto.FlowClose, 100), bound: make(chan *proto.CarrierBound, 100),
	}
}

func (f *fakeEdge) Connected(w *proto.Welcome) { f.welcomes <- w }

func (f *fakeEdge) Snapshot() []proto.ReplayEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]proto.ReplayEntry, 0, len(f.flows))
	for _, e := range f.flows {
		out = append(out, e)
	}
	return out
}

func (f *fakeEdge) Offer(m *proto.FlowOffer) *proto.OfferReply {
	if f.accept == nil {
		return nil
	}
	return f.accept(m)
}

func (f *fakeEdge) Bound(m *proto.CarrierBound) { f.bound <- m }
func (f *fakeEdge) Closed(m *proto.FlowClose)   { f.closed <- m }
func (f *fakeEdge) Disconnected(err error)      { f.errs <- err }
func (f *fakeEdge) install(e proto.ReplayEntry) { f.mu.Lock(); f.flows[e.Flow] = e; f.mu.Unlock() }

// relayOpts adjust a test relay's config.
type relayOpt func(*ServerConfig)

func startRelay(t testing.TB, p *testPKI, h Handler, addr string, opts ...relayOpt) *Server {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{
		PacketConn: pc, Identity: p.relay.TLS(), ClientCAs: p.ca.Pool(),
		Authorize: grantFor, Handler: h, HelloTimeout: 2 * time.Second, OfferTimeout: time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := Listen(context.Background(), cfg)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); pc.Close() })
	return s
}

type edgeOpt func(*ClientConfig)

// startEdge runs a client until the test ends.
func startEdge(t testing.TB, p *testPKI, site string, relay net.Addr, h ClientHandler, opts ...edgeOpt) *Client {
	t.Helper()
	cfg := ClientConfig{
		Relay: relay.String(), ServerName: "relay.test",
		Identity: p.edge(t, site), RelayCAs: p.ca.Pool(),
		Hello:      proto.Hello{Site: site, Capabilities: proto.CapIPv4Public | proto.CapTCPOffer | proto.CapCounters},
		Keepalive:  time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		DialTimeout: 3 * time.Second,
		Handler:     h,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func waitConnected(t testing.TB, c *Client) *proto.Welcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := c.WaitConnected(ctx)
	if err != nil {
		t.Fatalf("edge did not connect: %v", err)
	}
	return w
}

func recvWithin[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// testFlow is flow n of a site: a TCP flow from the site's prefix.
func testFlow(site string, n int) session.Flow {
	pfx, _ := sitePrefix(site)
	a := pfx.Addr().As16()
	a[15] = 0x10
	return session.Flow{
		Proto:  session.TCP,
		Site:   netip.AddrPortFrom(netip.AddrFrom16(a), uint16(40000+n)),
		Remote: netip.MustParseAddrPort("[2001:db8:ffff::443]:443"),
	}
}

func openFlow(ctx context.Context, c *Client, f *fakeEdge, fl session.Flow, n int) (*proto.FlowGrant, error) {
	g, err := c.Open(ctx, &proto.FlowOpen{Flow: fl, CarrierProto: session.TCP, EdgePort: uint16(61000 + n), LifetimeSec: 7440, Token: proto.BindToken(n)})
	if err == nil && f != nil {
		f.install(proto.ReplayEntry{Flow: fl, CarrierProto: session.TCP, EdgePort: uint16(61000 + n), Relay: g.Relay, LifetimeSec: 7440, Token: proto.BindToken(n)})
	}
	return g, err
}

// waitCounter waits for a server or client counter to reach want.
func waitCounter(t testing.TB, c *Counters, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Get(name) < want {
		if time.Now().After(deadline) {
			t.Fatalf("counter %s = %d, want %d; all: %v", name, c.Get(name), want, c.Snapshot())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isCode(err error, c proto.Code) bool { return errors.Is(err, c) }

func relayAddr(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("198.51.100.6"), port)
}
