package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// FuzzRelaySession feeds arbitrary bytes, as an authenticated edge could
// send after Hello, to the relay's session dispatch. It must never panic,
// must close the connection with the code of any protocol error, and must
// never show the handler a flow outside the site's grant.
func FuzzRelaySession(f *testing.F) {
	frames := func(ms ...proto.Message) []byte {
		var b []byte
		for _, m := range ms {
			b, _ = proto.AppendMessage(b, m)
		}
		return b
	}
	own, foreign := testFlow("home-1", 1), testFlow("home-2", 1)
	f.Add(frames(&proto.FlowOpen{ID: 1, Flow: own, CarrierProto: session.TCP}, &proto.FlowClose{Flow: own, Reason: proto.CodeClosed}))
	f.Add(frames(&proto.FlowOpen{ID: 2, Flow: foreign, CarrierProto: session.TCP}))
	f.Add(frames(&proto.FlowOpen{ID: 3, Flow: own, CarrierProto: session.TCP, Relay: relayAddr(20001)},
		&proto.FlowOpen{ID: 4, Flow: own, CarrierProto: session.UDP, Relay: relayAddr(40000)}))
	f.Add(frames(&proto.Replay{Last: true, Entries: []proto.ReplayEntry{
		{Flow: own, CarrierProto: session.TCP, Relay: relayAddr(20000)},
		{Flow: foreign, CarrierProto: session.TCP, Relay: relayAddr(20001)},
	}}))
	f.Add(frames(&proto.Ping{Seq: 1}, &proto.OfferReply{ID: 77}, &proto.Pong{}))
	f.Add(frames(&proto.Goodbye{Code: proto.CodeShutdown}))
	f.Add(frames(&proto.Welcome{SessionID: 1}))
	f.Add([]byte{0xc0, 0, 1, 0, 0x7e, 0, 0})
	f.Add([]byte{byte(proto.TypeFlowOpen), 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		grant, _ := grantFor("home-1", nil)
		grant.Capabilities |= proto.CapEdgeChoosesR
		h := &grantChecker{t: t, grant: grant}
		srv := &Server{cfg: ServerConfig{Handler: h, OfferTimeout: time.Second, MaxMessage: 4096, SendTimeout: time.Second,
			replayEvery: time.Nanosecond, Log: slog.New(slog.DiscardHandler)}}
		conn := &fakeConn{ctx: context.Background()}
		str := &fakeStream{r: bytes.NewReader(data)}
		ss := &Session{srv: srv, site: "home-1", grant: grant, conn: conn, str: str, w: newWire(str, 4096),
			q: newSendQueue(DefaultSendQueue), wrote: make(chan struct{}),
			offers: map[uint32]chan *proto.OfferReply{}, done: make(chan struct{})}
		go ss.writer()
		err := ss.readLoop()
		// What the read loop queued is written before the session ends.
		for {
			ss.q.mu.Lock()
			n := len(ss.q.buf)
			ss.q.mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		ss.end(err)
		<-ss.wrote
		if code := proto.CodeOf(err); code != proto.CodeInternal && code != proto.CodeOK && !errors.Is(err, ErrGoodbye) {
			if closed, ok := conn.closedWith(); !ok || closed != code {
				t.Fatalf("readLoop ended with %v (code %v) but closed the connection with %v (closed %v)", err, code, closed, ok)
			}
		}
		// Everything the relay wrote back must parse.
		r := bytes.NewReader(str.out.Bytes())
		for {
			m, err := proto.ReadMessage(r, 0)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("the relay wrote a frame it cannot read back: %v", err)
			}
			if g, ok := m.(*proto.FlowGrant); ok && g.Result == proto.CodeOK && !g.Relay.Addr().Is4() {
				t.Fatalf("grant without an IPv4 relay endpoint: %+v", g)
			}
		}
	})
}

// grantChecker is a relay Handler that fails the test if it is shown a
// flow outside its grant.
type grantChecker struct {
	t     *testing.T
	grant *proto.Welcome
}

func (g *grantChecker) check(f session.Flow) {
	if !siteOwns(g.grant, f.Site) {
		g.t.Fatalf("handler shown %v, outside the grant", f)
	}
}
func (g *grantChecker) Started(*Session) {}
func (g *grantChecker) Open(_ *Session, m *proto.FlowOpen) *proto.FlowGrant {
	g.check(m.Flow)
	if m.Relay.IsValid() {
		if !relayPickOK(g.grant, m.CarrierProto, m.Relay) {
			g.t.Fatalf("handler shown a pick outside the reserved ranges: %v", m.Relay)
		}
		return &proto.FlowGrant{Result: proto.CodeOK, Relay: m.Relay}
	}
	return &proto.FlowGrant{Result: proto.CodeOK, Relay: relayAddr(20000)}
}
func (g *grantChecker) Replayed(_ *Session, e *proto.ReplayEntry) proto.Code {
	g.check(e.Flow)
	return proto.CodeOK
}
func (g *grantChecker) ReplayDone(*Session)               {}
func (g *grantChecker) Closed(*Session, *proto.FlowClose) {}
func (g *grantChecker) Ended(*Session, error)             {}

type fakeConn struct {
	ctx    context.Context
	mu     sync.Mutex
	code   proto.Code
	closed bool
}

func (c *fakeConn) CloseWithError(code quic.ApplicationErrorCode, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed, c.code = true, proto.Code(code)
	}
	return nil
}
func (c *fakeConn) Context() context.Context { return c.ctx }
func (c *fakeConn) RemoteAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort("100.64.0.1:4000"))
}
func (c *fakeConn) closedWith() (proto.Code, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.closed
}

type fakeStream struct {
	r   io.Reader
	out bytes.Buffer
}

func (s *fakeStream) Read(b []byte) (int, error)       { return s.r.Read(b) }
func (s *fakeStream) Write(b []byte) (int, error)      { return s.out.Write(b) }
func (s *fakeStream) SetWriteDeadline(time.Time) error { return nil }
func (s *fakeStream) Close() error                     { return nil }

// FuzzEdgeSession feeds arbitrary bytes, as a relay could send after
// Welcome, to the edge's dispatch: no panic, protocol errors close the
// connection with their code, and every reply the edge writes parses.
func FuzzEdgeSession(f *testing.F) {
	frames := func(ms ...proto.Message) []byte {
		var b []byte
		for _, m := range ms {
			b, _ = proto.AppendMessage(b, m)
		}
		return b
	}
	own := testFlow("home-1", 1)
	f.Add(frames(&proto.FlowGrant{ID: 1, Relay: relayAddr(20000)}, &proto.CarrierBound{Flow: own, Public: netip.MustParseAddrPort("100.64.0.1:999")}))
	f.Add(frames(&proto.FlowOffer{ID: 5, Flow: own, CarrierProto: session.TCP, Relay: relayAddr(20000)}, &proto.FlowClose{Flow: own, Reason: proto.CodeExpired}))
	f.Add(frames(&proto.ReplayDone{Accepted: 1}, &proto.Ping{Seq: 3}, &proto.Pong{Seq: 1}))
	f.Add(frames(&proto.Goodbye{Code: proto.CodeShutdown, RetryMS: 100}))
	f.Add(frames(&proto.Hello{Site: "x"}))
	f.Add([]byte{0x90, 0, 0, 0x12, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		edge := newFakeEdge()
		edge.accept = func(m *proto.FlowOffer) *proto.OfferReply {
			return &proto.OfferReply{Result: proto.CodeOK, EdgePort: 61000, Token: 1}
		}
		c := &Client{cfg: ClientConfig{Handler: edge, Log: slog.New(slog.DiscardHandler)}}
		conn := &fakeConn{ctx: context.Background()}
		str := &fakeStream{r: bytes.NewReader(data)}
		cc := &clientConn{c: c, conn: conn, str: str, w: newWire(str, 4096), welcome: &proto.Welcome{SessionID: 1},
			offerSlots: make(chan struct{}, 4), pending: map[uint32]chan *proto.FlowGrant{1: make(chan *proto.FlowGrant, 1)},
			done: make(chan struct{})}
		// The fake edge's channels hold 100 messages; drain them so a
		// long input cannot block the dispatch.
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-edge.bound:
				case <-edge.closed:
				case <-stop:
					return
				}
			}
		}()
		cc.readLoop()
		close(stop)
		for range cap(cc.offerSlots) { // wait for offers still being answered
			cc.offerSlots <- struct{}{}
		}
		cc.mu.Lock()
		err := cc.err
		cc.mu.Unlock()
		if code := proto.CodeOf(err); err != nil && !errors.Is(err, ErrGoodbye) {
			if closed, ok := conn.closedWith(); !ok || closed != code {
				t.Fatalf("ended with %v (code %v) but closed with %v (closed %v)", err, code, closed, ok)
			}
		}
		r := bytes.NewReader(str.out.Bytes())
		for {
			_, err := proto.ReadMessage(r, 0)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("the edge wrote a frame it cannot read back: %v", err)
			}
		}
	})
}
