package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// quicConn and quicStream are what a session uses of *quic.Conn and
// *quic.Stream; the fuzz target of the session's dispatch fakes them.
type quicConn interface {
	CloseWithError(quic.ApplicationErrorCode, string) error
	Context() context.Context
	RemoteAddr() net.Addr
}

type quicStream interface {
	io.ReadWriter
	SetWriteDeadline(time.Time) error
	Close() error
}

// ErrSessionEnded is returned by a Session's methods once it has ended.
var ErrSessionEnded = errors.New("control: session ended")

// ErrGoodbye: the peer ended the session with a Goodbye; errors.Is also
// matches the Goodbye's code (proto.CodeShutdown...).
var ErrGoodbye = errors.New("control: peer said goodbye")

// Session is one edge's session at the relay.
type Session struct {
	srv   *Server
	site  string
	grant *proto.Welcome
	conn  quicConn
	str   quicStream
	w     *wire
	q     *sendQueue    // what the writer goroutine has yet to write
	wrote chan struct{} // closed when the writer has returned
	stall sync.Once     // the session is closed once for not reading

	// lastReplay is when the edge's last complete replay was taken
	// (read loop only): the next waits replayEvery after it.
	lastReplay time.Time

	mu        sync.Mutex
	offers    map[uint32]chan *proto.OfferReply
	nextOffer uint32
	done      chan struct{}
	err       error
}

// Site is the site id from the edge's certificate.
func (ss *Session) Site() string { return ss.site }

// Grant is the Welcome the edge was sent; do not modify it.
func (ss *Session) Grant() *proto.Welcome { return ss.grant }

// ID is the session id.
func (ss *Session) ID() uint64 { return ss.grant.SessionID }

// RemoteAddr is the edge's current address (the CGNAT's public side); it
// changes when the CGNAT rebinds the control channel.
func (ss *Session) RemoteAddr() net.Addr { return ss.conn.RemoteAddr() }

// Done is closed when the session has ended.
func (ss *Session) Done() <-chan struct{} { return ss.done }

// Err says why the session ended, once Done is closed.
func (ss *Session) Err() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.err
}

// Offer offers an inbound flow to the edge and waits for its answer, at
// most the server's OfferTimeout. A refusal returns the reply and its
// code as the error; no answer in time returns proto.CodeTimeout.
func (ss *Session) Offer(ctx context.Context, m *proto.FlowOffer) (*proto.OfferReply, error) {
	if !siteOwns(ss.grant, m.Flow.Site) {
		return nil, fmt.Errorf("control: offer of %v outside the grant of %s: %w", m.Flow, ss.site, proto.CodeAddressNotGranted)
	}
	ch := make(chan *proto.OfferReply, 1)
	ss.mu.Lock()
	if ss.err != nil {
		ss.mu.Unlock()
		return nil, ErrSessionEnded
	}
	ss.nextOffer++
	id := ss.nextOffer
	ss.offers[id] = ch
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		delete(ss.offers, id)
		ss.mu.Unlock()
	}()
	o := *m
	o.ID = id
	if err := ss.post(&o, false); err != nil {
		return nil, err
	}
	ss.srv.counters.inc(mOffersSent)
	t := time.NewTimer(ss.srv.cfg.OfferTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.Result != proto.CodeOK {
			ss.srv.counters.code(fOfferRefused, r.Result)
			return r, r.Result
		}
		ss.srv.counters.inc(mOffersAccepted)
		return r, nil
	case <-t.C:
		ss.srv.counters.code(fOfferRefused, proto.CodeTimeout)
		return nil, proto.CodeTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ss.done:
		return nil, ErrSessionEnded
	}
}

// Bound tells the edge a carrier was bound or re-bound. Like every
// message the relay sends on its own (Moved, ICMPError, CloseFlow,
// Offer), it is queued, never waited for (sendqueue.go).
func (ss *Session) Bound(m *proto.CarrierBound) error { return ss.post(m, false) }

// ICMPError sends the edge an ICMPv6 error about one of its flows (the
// caller checked it is, and rate-limits). It is advisory: with the
// session's queue full it is dropped (send_dropped_icmp-error).
func (ss *Session) ICMPError(packet []byte) error {
	if err := ss.post(&proto.ICMPError{Packet: packet}, true); err != nil {
		return err
	}
	ss.srv.counters.inc(mICMPErrorsSent)
	return nil
}

// Moved asks the edge to prove a carrier with a token keepalive; an edge
// whose grant lacks proto.CapRebind cannot, and is not asked.
func (ss *Session) Moved(m *proto.CarrierMoved) error {
	if !ss.grant.Capabilities.Has(proto.CapRebind) {
		return ErrNoRebind
	}
	return ss.post(m, false)
}

// ErrNoRebind: the session's edge does not answer CarrierMoved.
var ErrNoRebind = errors.New("control: the edge does not re-bind carriers")

// CloseFlow tells the edge a flow ended (CodeClosed, CodeExpired...).
func (ss *Session) CloseFlow(f session.Flow, reason proto.Code) error {
	if err := ss.post(&proto.FlowClose{Flow: f, Reason: reason}, false); err != nil {
		return err
	}
	ss.srv.counters.inc(mFlowsClosed)
	return nil
}

// Shutdown ends the session gracefully: Goodbye(shutdown), then the
// connection is closed with CodeShutdown once the edge has closed it or
// after a second. retry asks the edge to wait that long before
// reconnecting.
func (ss *Session) Shutdown(retry time.Duration, reason string) {
	ss.q.stop() // nothing after the Goodbye
	sayGoodbye(ss.conn, ss.str, ss.w, &proto.Goodbye{Code: proto.CodeShutdown, RetryMS: uint32(retry.Milliseconds()), Reason: clipReason(reason)})
}

// goodbyeWait bounds how long the sender of a Goodbye waits for the peer
// to close; closing at once could drop the Goodbye with the stream.
const goodbyeWait = time.Second

func sayGoodbye(conn quicConn, str quicStream, w *wire, g *proto.Goodbye) {
	// A stalled peer must not hold the shutdown.
	str.SetWriteDeadline(time.Now().Add(goodbyeWait))
	if w.send(g) == nil {
		str.Close()
		t := time.NewTimer(goodbyeWait)
		select {
		case <-conn.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	conn.CloseWithError(quic.ApplicationErrorCode(g.Code), g.Reason)
}

func (ss *Session) end(err error) {
	ss.q.stop()
	ss.mu.Lock()
	if ss.err == nil {
		if err == nil {
			err = ErrSessionEnded
		}
		ss.err = err
		close(ss.done)
	}
	ss.mu.Unlock()
}

// fail closes the connection for a protocol error and returns the error
// the session ends with.
func (ss *Session) fail(code proto.Code, err error) error {
	ss.srv.closeConn(ss.conn, fConnClosed, code, err.Error())
	ss.srv.cfg.Log.Warn("session closed for a protocol error", "site", ss.site, "code", code, "err", err)
	return fmt.Errorf("%w: %w", code, err)
}

// readLoop dispatches the edge's messages until the connection ends.
func (ss *Session) readLoop() error {
	s := ss.srv
	h := s.cfg.Handler
	var replayAccepted, replayRefused uint32
	for {
		m, err := ss.w.recv(func() { s.counters.inc(mAdvisorySkipped) })
		if err != nil {
			if code := proto.CodeOf(err); code != proto.CodeInternal {
				return ss.fail(code, err)
			}
			return peerError(err)
		}
		switch m := m.(type) {
		case *proto.FlowOpen:
			g := ss.open(m)
			g.ID = m.ID
			if err := ss.reply(g); err != nil {
				return err
			}
		case *proto.FlowClose:
			s.counters.inc(mFlowsClosed)
			h.Closed(ss, m)
		case *proto.OfferReply:
			ss.mu.Lock()
			ch := ss.offers[m.ID]
			delete(ss.offers, m.ID)
			ss.mu.Unlock()
			if ch == nil {
				s.counters.inc(mLateReplies) // after its timeout: ignored
				continue
			}
			ch <- m
		case *proto.Replay:
			for i := range m.Entries {
				e := &m.Entries[i]
				s.counters.inc(mReplayEntries)
				code := checkFlow(ss.grant, e.Flow)
				if code == proto.CodeOK {
					code = h.Replayed(ss, e)
				}
				if code == proto.CodeOK {
					replayAccepted++
					continue
				}
				replayRefused++
				s.counters.code(fFlowRefused, code)
				if err := ss.reply(&proto.FlowClose{Flow: e.Flow, Reason: code}); err != nil {
					return err
				}
			}
			if m.Last {
				if err := ss.replayTurn(); err != nil {
					return err
				}
				h.ReplayDone(ss)
				if err := ss.reply(&proto.ReplayDone{Accepted: replayAccepted, Refused: replayRefused}); err != nil {
					return err
				}
				replayAccepted, replayRefused = 0, 0
			}
		case *proto.Ping:
			var c []proto.Counter
			if s.cfg.Counters != nil && ss.grant.Capabilities.Has(proto.CapCounters) {
				c = s.cfg.Counters(ss)
			}
			if err := ss.reply(&proto.Pong{Seq: m.Seq, Counters: c}); err != nil {
				return err
			}
		case *proto.Pong:
			// the relay sends no Pings; a stray Pong is harmless
		case *proto.Goodbye:
			s.counters.code(fGoodbye, m.Code)
			ss.conn.CloseWithError(quic.ApplicationErrorCode(proto.CodeShutdown), "goodbye")
			return fmt.Errorf("%w (%s): %w", ErrGoodbye, m.Reason, m.Code)
		default: // a relay-to-edge message, or a second Hello
			return ss.fail(proto.CodeProtocolViolation, fmt.Errorf("%v from an edge", m.Type()))
		}
	}
}

// replayEvery spaces an edge's complete replays: ending one (Replay with
// last) makes the relay walk the site's flows, while the message is 6
// bytes. An edge replays once per session; one that asks again waits,
// its own reads paused, so no edge can make the relay walk its flows
// more often (replay_throttled).
const replayEvery = 5 * time.Second

// replayTurn waits until the session may end another replay.
func (ss *Session) replayTurn() error {
	now := time.Now()
	if !ss.lastReplay.IsZero() {
		if wait := ss.lastReplay.Add(cmp.Or(ss.srv.cfg.replayEvery, replayEvery)).Sub(now); wait > 0 {
			ss.srv.counters.inc(mReplayThrottled)
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ss.done:
				return ErrSessionEnded
			case <-ss.conn.Context().Done():
				return peerError(context.Cause(ss.conn.Context()))
			}
			now = time.Now()
		}
	}
	ss.lastReplay = now
	return nil
}

// open checks a FlowOpen against the grant and hands it to the handler.
func (ss *Session) open(m *proto.FlowOpen) *proto.FlowGrant {
	s := ss.srv
	if code := checkFlow(ss.grant, m.Flow); code != proto.CodeOK {
		s.counters.code(fFlowRefused, code)
		return &proto.FlowGrant{Result: code}
	}
	if m.Relay.IsValid() && !relayPickOK(ss.grant, m.CarrierProto, m.Relay) {
		s.counters.code(fFlowRefused, proto.CodeAddressNotGranted)
		return &proto.FlowGrant{Result: proto.CodeAddressNotGranted}
	}
	g := s.cfg.Handler.Open(ss, m)
	if g == nil {
		g = &proto.FlowGrant{Result: proto.CodeInternal}
	}
	// Handler bugs must not reach the wire: a grant needs an IPv4 R, and
	// the R the edge picked (it is already sending to it).
	if g.Result == proto.CodeOK && (!g.Relay.Addr().Is4() || m.Relay.IsValid() && g.Relay != m.Relay) {
		g = &proto.FlowGrant{Result: proto.CodeInternal}
	}
	if g.Result != proto.CodeOK {
		s.counters.code(fFlowRefused, g.Result)
	} else {
		s.counters.inc(mFlowsOpened)
	}
	return g
}

// peerError turns the QUIC error that ended a connection into a Code
// where the peer sent one, and marks TLS failures with ErrHandshake (in
// TLS 1.3 the relay refuses a client certificate after the edge's side of
// the handshake is complete, so the edge sees it on its first read).
func peerError(err error) error {
	var ae *quic.ApplicationError
	var te *quic.TransportError
	switch {
	case errors.As(err, &ae):
		return fmt.Errorf("%w (%s)", proto.Code(ae.ErrorCode), ae.ErrorMessage)
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return err
}
