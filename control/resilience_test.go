package control

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// natProxy stands in for the upstream CGNAT: the edge sends to front,
// the proxy forwards from back, its "public port". Rebind swaps back for
// a new socket, as a CGNAT does when a mapping expires and is re-made.
type natProxy struct {
	front  *net.UDPConn
	server *net.UDPAddr

	mu     sync.Mutex
	back   *net.UDPConn
	client *net.UDPAddr
	wg     sync.WaitGroup
}

func newNATProxy(t *testing.T, server net.Addr) *natProxy {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &natProxy{front: front, server: server.(*net.UDPAddr)}
	p.Rebind(t)
	p.wg.Add(1)
	go p.forwardOut()
	t.Cleanup(func() {
		front.Close()
		p.mu.Lock()
		p.back.Close()
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Rebind gives the edge a new public port; the old mapping is dropped.
func (p *natProxy) Rebind(t *testing.T) {
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	old := p.back
	p.back = back
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	p.wg.Add(1)
	go p.forwardIn(back)
}

func (p *natProxy) publicAddr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.back.LocalAddr()
}

func (p *natProxy) forwardOut() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := p.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.client = from
		back := p.back
		p.mu.Unlock()
		back.WriteToUDP(buf[:n], p.server)
	}
}

func (p *natProxy) forwardIn(back *net.UDPConn) {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := back.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		client := p.client
		p.mu.Unlock()
		if client != nil {
			p.front.WriteToUDP(buf[:n], client)
		}
	}
}

func TestNATRebindingKeepsSession(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	nat := newNATProxy(t, srv.Addr())
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", nat.front.LocalAddr(), edge)
	w := waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	ctx := context.Background()
	if _, err := openFlow(ctx, c, edge, testFlow("home-1", 1), 1); err != nil {
		t.Fatal(err)
	}
	before := ss.RemoteAddr().String()
	for i := 2; i <= 4; i++ {
		nat.Rebind(t)
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := openFlow(octx, c, edge, testFlow("home-1", i), i)
		cancel()
		if err != nil {
			t.Fatalf("flow open after rebinding %d: %v", i-1, err)
		}
		if got := ss.RemoteAddr().String(); got != nat.publicAddr().String() {
			t.Errorf("relay sees the edge at %s, its new public address is %s", got, nat.publicAddr())
		}
	}
	if ss.RemoteAddr().String() == before {
		t.Error("remote address never changed")
	}
	if n := srv.Counters().Get("sessions_started"); n != 1 {
		t.Errorf("%d sessions: rebinding made a new handshake", n)
	}
	if c.Welcome() == nil || c.Welcome().SessionID != w.SessionID {
		t.Error("the edge's session changed")
	}
}

func TestMigrateToNewSocket(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	c := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge())
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Migrate(ctx, pc); err != nil {
		t.Fatal(err)
	}
	if _, err := openFlow(ctx, c, nil, testFlow("home-1", 1), 1); err != nil {
		t.Fatal(err)
	}
	if ss.RemoteAddr().String() != pc.LocalAddr().String() {
		t.Errorf("relay sees %v, want %v", ss.RemoteAddr(), pc.LocalAddr())
	}
	if srv.Counters().Get("sessions_started") != 1 {
		t.Error("migration made a new session")
	}
}

// TestReplayAfterRelayRestart: the relay loses every flow; the edge
// reconnects and its table, being authoritative, is installed again.
func TestReplayAfterRelayRestart(t *testing.T) {
	for _, mode := range []string{"graceful", "crash"} {
		t.Run(mode, func(t *testing.T) {
			p := newPKI(t)
			key := [32]byte{1, 2, 3}
			withKey := func(c *ServerConfig) { c.StatelessResetKey = &key }
			relay1 := newFakeRelay()
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := pc.LocalAddr().String()
			pc.Close()
			srv1 := startRelay(t, p, relay1, addr, withKey)
			edge := newFakeEdge()
			c := startEdge(t, p, "home-1", srv1.Addr(), edge)
			w1 := waitConnected(t, c)
			const n = 600 // more than one Replay batch
			ctx := context.Background()
			for i := range n {
				if _, err := openFlow(ctx, c, edge, testFlow("home-1", i), i); err != nil {
					t.Fatal(err)
				}
			}
			if mode == "graceful" {
				srv1.Close()
				srv1.tr.Conn.Close() // the caller owns a PacketConn it passes in
			} else {
				// The process dies: no Goodbye, no CONNECTION_CLOSE. The
				// new relay's stateless reset tells the edge at once.
				srv1.tr.Conn.Close()
			}
			start := time.Now()
			relay2 := newFakeRelay()
			srv2 := startRelay(t, p, relay2, addr, withKey)
			recvWithin(t, edge.errs, "disconnect")
			ss := recvWithin(t, relay2.replays, "replay on the new relay")
			t.Logf("%s restart: replay of %d flows complete after %v", mode, n, time.Since(start))
			if got := relay2.nflows(); got != n {
				t.Fatalf("new relay holds %d flows, want %d", got, n)
			}
			relay1.mu.Lock()
			relay2.mu.Lock()
			for fl, r := range relay1.flows {
				if relay2.flows[fl] != r {
					t.Errorf("flow %v came back with R %d, had %d", fl, relay2.flows[fl], r)
					break
				}
			}
			relay2.mu.Unlock()
			relay1.mu.Unlock()
			if srv2.Counters().Get("replay_entries") != n {
				t.Errorf("counters %v", srv2.Counters().Snapshot())
			}
			if w2 := waitConnected(t, c); w2.SessionID == w1.SessionID || ss.ID() != w2.SessionID {
				t.Errorf("session ids old %d new %d relay %d", w1.SessionID, w2.SessionID, ss.ID())
			}
			if _, err := openFlow(ctx, c, edge, testFlow("home-1", n), n); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReplayRefusesForeignEntries(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	edge := newFakeEdge()
	edge.install(proto.ReplayEntry{Flow: testFlow("home-1", 1), CarrierProto: 6, Relay: relayAddr(20000)})
	edge.install(proto.ReplayEntry{Flow: testFlow("home-2", 1), CarrierProto: 6, Relay: relayAddr(20001)})
	startEdge(t, p, "home-1", srv.Addr(), edge)
	cl := recvWithin(t, edge.closed, "refusal of the foreign entry")
	if cl.Flow != testFlow("home-2", 1) || cl.Reason != proto.CodeAddressNotGranted {
		t.Errorf("close = %+v", cl)
	}
	recvWithin(t, relay.replays, "replay done")
	if relay.nflows() != 1 || srv.Counters().Get("flow_refused_address-not-granted") != 1 {
		t.Errorf("relay flows %d, counters %v", relay.nflows(), srv.Counters().Snapshot())
	}
}

// TestReconnectResumes: after the connection is lost, the edge comes back
// with a resumed TLS session (no certificate exchange), to the same relay
// and, with shared ticket keys, to a restarted one.
func TestReconnectResumes(t *testing.T) {
	p := newPKI(t)
	keys := [][32]byte{{7}}
	withKeys := func(c *ServerConfig) { c.TicketKeys = keys }
	relay := newFakeRelay()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	srv := startRelay(t, p, relay, addr, withKeys)
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), edge)
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	// The network drops the connection (as a long outage would).
	ss.conn.CloseWithError(0, "test: drop")
	recvWithin(t, edge.errs, "disconnect")
	recvWithin(t, relay.started, "second session")
	waitCounter(t, srv.Counters(), "sessions_resumed", 1)
	waitCounter(t, c.Counters(), "sessions_resumed", 1)

	srv.Close()
	srv.tr.Conn.Close()
	srv2 := startRelay(t, p, newFakeRelay(), addr, withKeys)
	recvWithin(t, edge.errs, "disconnect")
	waitCounter(t, srv2.Counters(), "sessions_resumed", 1)
}

// TestResumptionRechecksCertificate: a session ticket must not outlive
// the certificate it was issued for.
func TestResumptionRechecksCertificate(t *testing.T) {
	p := newPKI(t)
	var skew atomic.Int64
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) {
		c.Time = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	short, err := p.ca.IssueEdge("home-1", pki.Validity{Length: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), edge, func(c *ClientConfig) { c.Identity = short.TLS() })
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	skew.Store(int64(2 * time.Hour)) // the certificate has expired since
	ss.conn.CloseWithError(0, "test: drop")
	recvWithin(t, edge.errs, "disconnect")
	waitCounter(t, srv.Counters(), "tls_refused_expired", 1)
	if n := srv.Counters().Get("sessions_started"); n != 1 {
		t.Errorf("%d sessions: an expired edge resumed", n)
	}
}
