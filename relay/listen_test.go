package relay

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// quietEdge is an edge agent with no flows that reports its disconnects.
type quietEdge struct{ down chan error }

func (e *quietEdge) Connected(*proto.Welcome)                 {}
func (e *quietEdge) Snapshot() []proto.ReplayEntry            { return nil }
func (e *quietEdge) Offer(*proto.FlowOffer) *proto.OfferReply { return nil }
func (e *quietEdge) Bound(*proto.CarrierBound)                {}
func (e *quietEdge) Closed(*proto.FlowClose)                  {}
func (e *quietEdge) Disconnected(err error)                   { e.down <- err }

// TestRestartedRelayResetsEdges: the relay crashes (its socket goes, no
// CONNECTION_CLOSE is sent) and a new relay process, with the same key
// files, starts on the same address. The edge must notice at its next
// packet, at the latest its next Ping (keepalive 1 s here; here its
// ACKs of the session start come first), through the stateless reset the new relay
// can only send with the same reset key as the old one, not at the Pong
// timeout and idle timeout of 3 keepalives; and it resumes its TLS
// session, which needs the same ticket key. Both keys come from the
// relay's serverConfig, as relay.Run uses it. Real QUIC on loopback.
func TestRestartedRelayResetsEdges(t *testing.T) {
	ca, err := pki.NewCA("test CA", pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	rid, err := ca.IssueRelay([]string{"relay.test"}, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	eid, err := ca.IssueEdge("home", pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	s := pinSettings()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(addr string) (*control.Server, net.PacketConn) {
		t.Helper()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := newAgent(s, log)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := serverConfig(s, rid, rid.TLS(), ca.Pool(), c, log)
		if err != nil {
			t.Fatal(err)
		}
		cfg.PacketConn = pc
		srv, err := control.Listen(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(); pc.Close() })
		return srv, pc
	}
	srv1, pc1 := start("127.0.0.1:0")

	const keepalive = time.Second
	edge := &quietEdge{down: make(chan error, 10)}
	client, err := control.NewClient(control.ClientConfig{
		Relay: srv1.Addr().String(), ServerName: "relay.test", Identity: eid.TLS(), RelayCAs: ca.Pool(),
		Hello:     proto.Hello{Site: "home", Capabilities: proto.CapCounters},
		Keepalive: keepalive, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Handler: edge,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { client.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	w1, err := client.WaitConnected(wctx)
	if err != nil {
		t.Fatal(err)
	}

	// The crash: the socket goes with the process, nothing is sent.
	addr := pc1.LocalAddr().String()
	pc1.Close()
	crashed := time.Now()
	start(addr)
	var took time.Duration
	select {
	case <-edge.down:
		took = time.Since(crashed)
	case <-time.After(3*keepalive + 2*time.Second):
		t.Fatal("the edge never noticed the restart")
	}
	// One keepalive until the next Ping, then a round trip; the timeouts
	// would take 3 keepalives.
	if took > keepalive+500*time.Millisecond {
		t.Errorf("the edge noticed the restart after %v, want within one keepalive (%v): no stateless reset", took, keepalive)
	}
	t.Logf("edge noticed the restart after %v (keepalive %v)", took, keepalive)
	w2, err := client.WaitConnected(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if w2.SessionID == w1.SessionID {
		t.Error("no new session")
	}
	if n := client.Counters().Get("sessions_resumed"); n != 1 {
		t.Errorf("sessions_resumed = %d after the restart, want 1: the new relay did not take the old one's ticket", n)
	}
}
