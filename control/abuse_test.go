package control

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// rawEdge is an authenticated QUIC connection that writes whatever bytes
// a test gives it, to play a broken or hostile edge.
type rawEdge struct {
	conn *quic.Conn
	str  *quic.Stream
}

func dialRaw(t *testing.T, p *testPKI, site string, relay net.Addr) *rawEdge {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tlsConf := pki.ClientConfig(p.edge(t, site), p.ca.Pool(), pki.ClientOptions{ServerName: "relay.test", NextProtos: []string{proto.ALPN}})
	conn, err := quic.DialAddr(ctx, relay.String(), tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return &rawEdge{conn: conn, str: str}
}

func (r *rawEdge) hello(t *testing.T, site string) {
	t.Helper()
	if err := proto.WriteMessage(r.str, &proto.Hello{Site: site}); err != nil {
		t.Fatal(err)
	}
	r.str.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := proto.ReadMessage(r.str, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*proto.Welcome); !ok {
		t.Fatalf("got %v, want welcome", m.Type())
	}
}

// closedWith waits for the relay to close the connection and returns its code.
func (r *rawEdge) closedWith(t *testing.T) proto.Code {
	t.Helper()
	select {
	case <-r.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not close the connection")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(r.conn.Context()); !errors.As(err, &ae) || !ae.Remote {
		t.Fatalf("closed with %v, want an application error from the relay", err)
	}
	return proto.Code(ae.ErrorCode)
}

// TestBadMessagesCloseOnlyTheOffender: each broken edge is closed with
// its own code and counter while a good edge keeps opening flows.
func TestBadMessagesCloseOnlyTheOffender(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "", func(c *ServerConfig) { c.MaxMessage = 4096; c.HelloTimeout = 500 * time.Millisecond })
	good := startEdge(t, p, "good", srv.Addr(), newFakeEdge())
	waitConnected(t, good)

	goodOpen := func(i int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := openFlow(ctx, good, nil, testFlow("good", i), i); err != nil {
			t.Fatalf("the good edge could not open a flow: %v", err)
		}
	}
	open := (&proto.FlowOpen{Flow: testFlow("bad", 1), CarrierProto: 6}).Append(nil)
	cases := []struct {
		name      string
		skipHello bool
		send      []byte
		want      proto.Code
	}{
		{"malformed body", false, append([]byte{byte(proto.TypeFlowOpen), 0, 10}, open[:10]...), proto.CodeMalformed},
		{"invalid field", false, append([]byte{byte(proto.TypeFlowOpen), 0, byte(len(open))}, append(append([]byte{}, open[:5]...), append([]byte{0}, open[6:]...)...)...), proto.CodeMalformed},
		{"oversized frame", false, []byte{byte(proto.TypeReplay), 0x20, 0x00}, proto.CodeTooLarge},
		{"unknown critical type", false, []byte{0x7e, 0, 1, 0}, proto.CodeUnsupportedType},
		{"relay-only message", false, (func() []byte { b, _ := proto.AppendMessage(nil, &proto.Welcome{SessionID: 1}); return b })(), proto.CodeProtocolViolation},
		{"flow open before hello", true, append([]byte{byte(proto.TypeFlowOpen), 0, byte(len(open))}, open...), proto.CodeProtocolViolation},
		{"garbage instead of hello", true, []byte{0x01, 0, 3, 1, 2, 3}, proto.CodeMalformed},
		{"silence instead of hello", true, nil, proto.CodeTimeout},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, p, "bad", srv.Addr())
			if !tc.skipHello {
				r.hello(t, "bad")
			}
			// An advisory type the relay does not know is skipped first.
			r.str.Write([]byte{0xc0, 0, 2, 9, 9})
			if tc.send != nil {
				if _, err := r.str.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			} else {
				r.str.Write([]byte{}) // opens the stream without a message
			}
			if got := r.closedWith(t); got != tc.want {
				t.Errorf("closed with %v, want %v", got, tc.want)
			}
			goodOpen(i)
		})
	}
	sc := srv.Counters()
	for _, c := range []proto.Code{proto.CodeMalformed, proto.CodeTooLarge, proto.CodeUnsupportedType, proto.CodeProtocolViolation, proto.CodeTimeout} {
		if sc.Get("conn_closed_"+c.String()) == 0 {
			t.Errorf("counter conn_closed_%s not set: %v", c.String(), sc.Snapshot())
		}
	}
	if sc.Get("advisory_skipped") == 0 {
		t.Error("advisory message not counted")
	}
	if good.Welcome() == nil || srv.Session("good") == nil {
		t.Error("the good edge lost its session")
	}
}

// TestEdgeClosesOnBadRelayMessage: the edge applies the same rules to
// the relay: a malformed message closes the connection with its code.
func TestEdgeClosesOnBadRelayMessage(t *testing.T) {
	p := newPKI(t)
	tlsConf := pki.ServerConfig(p.relay.TLS(), p.ca.Pool(), pki.ServerOptions{NextProtos: []string{proto.ALPN}})
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan error, 1)
	go func() {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		str, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		proto.ReadMessage(str, 0)
		proto.WriteMessage(str, &proto.Welcome{SessionID: 9})
		// A CarrierBound cut short: its declared length is right, its
		// flow is not.
		str.Write([]byte{byte(proto.TypeCarrierBound), 0, 3, 6, 0, 0})
		<-conn.Context().Done()
		closed <- context.Cause(conn.Context())
	}()
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", ln.Addr(), edge)
	err = recvWithin(t, edge.errs, "session end")
	if !errors.Is(err, proto.ErrTruncated) {
		t.Errorf("edge ended with %v, want a truncated message", err)
	}
	var ae *quic.ApplicationError
	if cause := recvWithin(t, closed, "close at the relay"); !errors.As(cause, &ae) || proto.Code(ae.ErrorCode) != proto.CodeMalformed {
		t.Errorf("relay saw %v, want close code malformed", cause)
	}
	if c.Counters().Get("conn_closed_malformed") != 1 {
		t.Errorf("client counters %v", c.Counters().Snapshot())
	}
}

// TestCloseDoesNotWaitForSilentEdges: an edge that connected but never
// said Hello must not hold the relay's shutdown for the Hello timeout.
func TestCloseDoesNotWaitForSilentEdges(t *testing.T) {
	p := newPKI(t)
	srv := startRelay(t, p, newFakeRelay(), "", func(c *ServerConfig) { c.HelloTimeout = time.Minute })
	r := dialRaw(t, p, "home-1", srv.Addr())
	r.str.Write([]byte{}) // the stream exists, no message
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for the silent edge")
	}
}
