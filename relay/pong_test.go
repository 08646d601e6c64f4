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
	"github.com/unmap-dev/unmap/session"
)

// TestPongCarriesSiteCounters: the relay's Pongs carry the site's
// counters at the relay (its flows, opens, closes, refusals), which the
// edge keeps for `unmap status`. Real QUIC on loopback: an edge opens
// two flows, closes one and has one refused (its relay port is out of
// range), then waits for a Pong that says so.
func TestPongCarriesSiteCounters(t *testing.T) {
	ca, err := pki.NewCA("test CA", pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	rid, _ := ca.IssueRelay([]string{"relay.test"}, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, pki.Validity{})
	eid, _ := ca.IssueEdge("home", pki.Validity{})
	s := pinSettings()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := newAgent(s, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := serverConfig(s, rid, rid.TLS(), ca.Pool(), c, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg.PacketConn, err = net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.Listen(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); cfg.PacketConn.Close() })

	client, err := control.NewClient(control.ClientConfig{
		Relay: srv.Addr().String(), ServerName: "relay.test", Identity: eid.TLS(), RelayCAs: ca.Pool(),
		Hello:     proto.Hello{Site: "home", Capabilities: proto.CapCounters | proto.CapEdgeChoosesR},
		Keepalive: 200 * time.Millisecond,
		Handler:   &quietEdge{down: make(chan error, 10)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan struct{})
	go func() { client.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := client.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	flow := func(n uint16) session.Flow {
		return session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), 1000+n), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	}
	for i := range uint16(2) {
		if _, err := client.Open(ctx, &proto.FlowOpen{Flow: flow(i), CarrierProto: session.UDP, EdgePort: 61000 + i, LifetimeSec: 60}); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Close(flow(0), proto.CodeClosed); err != nil {
		t.Fatal(err)
	}
	// The open flow again on another carrier: refused (flow-exists).
	if _, err := client.Open(ctx, &proto.FlowOpen{Flow: flow(1), CarrierProto: session.UDP, EdgePort: 61005, Relay: netip.AddrPortFrom(pinRelay, 20001), LifetimeSec: 60}); err == nil {
		t.Fatal("a second carrier for an open flow was granted")
	}
	want := map[proto.CounterID]uint64{proto.CounterFlows: 1, proto.CounterFlowOpens: 2, proto.CounterFlowCloses: 1, proto.CounterRefusals: 1}
	var got map[proto.CounterID]uint64
	for ctx.Err() == nil {
		got = map[proto.CounterID]uint64{}
		for _, c := range client.RelayCounters() {
			got[c.ID] = c.Value
		}
		if len(got) == len(want) && got[1] == want[1] && got[2] == want[2] && got[3] == want[3] && got[4] == want[4] {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("relay counters in the edge's last Pong: %v, want %v", got, want)
}
