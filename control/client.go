package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// MaxPendingOffers bounds the inbound offers the edge decides at once;
// more are refused with proto.CodeNoResources.
const MaxPendingOffers = 256

// Errors of the edge's side.
var (
	// ErrDisconnected: there is no session now, or it ended while waiting.
	ErrDisconnected = errors.New("control: not connected to the relay")
	// ErrHandshake: the QUIC/TLS handshake failed (a certificate refused
	// by either side, a wrong ALPN); errors.Is also matches the cause.
	ErrHandshake = errors.New("control: handshake failed")
)

// ClientHandler is the edge agent's side of the channel.
type ClientHandler interface {
	// Connected is called with each new session's grant, before replay.
	Connected(w *proto.Welcome)
	// Snapshot returns the edge's flow table, which the client replays
	// after every Welcome: the edge's table is authoritative.
	Snapshot() []proto.ReplayEntry
	// Offer decides on an inbound flow. It runs in its own goroutine and
	// may take a while (the LAN host's SYN/ACK); nil means refused. The
	// client sets the reply's ID.
	Offer(m *proto.FlowOffer) *proto.OfferReply
	// Bound reports a carrier bound or re-bound at the relay.
	Bound(m *proto.CarrierBound)
	// Closed reports a flow the relay closed or refused (also a replayed
	// flow it did not take back).
	Closed(m *proto.FlowClose)
	// Disconnected is called when a session attempt or session ends.
	Disconnected(err error)
}

// MoveHandler is what a ClientHandler that offers proto.CapRebind also
// implements: Moved asks it to prove a carrier is its own with a token
// keepalive (proto.CarrierMoved). It must not block.
type MoveHandler interface {
	Moved(m *proto.CarrierMoved)
}

// ICMPErrorHandler is implemented by a ClientHandler that takes the
// ICMPv6 errors the relay sends about the site's flows (proto.ICMPError).
// It is optional: without it they are counted as icmp_errors_unhandled
// and dropped. ICMPError runs on the read loop and must not block.
type ICMPErrorHandler interface {
	ICMPError(m *proto.ICMPError)
}

// ClientConfig configures the edge's side. Zero values of optional fields
// mean the defaults in their comments.
type ClientConfig struct {
	Relay      string // relay control endpoint, host:port
	ServerName string // name in the relay's certificate; default: the host of Relay

	Identity tls.Certificate  // the edge's certificate and key
	RelayCAs *x509.CertPool   // CA that signs the relay
	Time     func() time.Time // clock for certificate checks; default time.Now

	// Hello is sent on every connect; the client sets Version and Previous.
	Hello proto.Hello

	Keepalive   time.Duration // QUIC keepalive; default 15s, at most 25s; idle timeout is 3×
	MinBackoff  time.Duration // first reconnect delay; default 250ms
	MaxBackoff  time.Duration // longest reconnect delay; default 30s
	DialTimeout time.Duration // handshake plus Welcome; default 10s
	MaxMessage  int           // largest message body read; default proto.MaxBody

	PacketConn net.PacketConn         // socket to dial from; default a new UDP socket
	Handler    ClientHandler          // required
	Counters   func() []proto.Counter // counters sent in Ping; may be nil
	Log        *slog.Logger           // default: discard
}

func (c *ClientConfig) withDefaults() (ClientConfig, error) {
	o := *c
	if o.Handler == nil {
		return o, errors.New("control: ClientConfig needs a Handler")
	}
	if o.Relay == "" || len(o.Identity.Certificate) == 0 || o.RelayCAs == nil {
		return o, errors.New("control: ClientConfig needs Relay, Identity and RelayCAs")
	}
	if o.ServerName == "" {
		host, _, err := net.SplitHostPort(o.Relay)
		if err != nil {
			return o, fmt.Errorf("control: relay %q: %w", o.Relay, err)
		}
		o.ServerName = host
	}
	if o.Keepalive <= 0 {
		o.Keepalive = 15 * time.Second
	}
	if o.Keepalive > 25*time.Second {
		return o, fmt.Errorf("control: keepalive %v is above 25s, slower than a CGNAT's 30 s UDP timeout", o.Keepalive)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.MaxMessage <= 0 || o.MaxMessage > proto.MaxBody {
		o.MaxMessage = proto.MaxBody
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Client is the edge's control channel: it keeps one session with the
// relay, reconnecting with jittered backoff and replaying the edge's flow
// table after each Welcome. Make one with NewClient and call Run.
type Client struct {
	cfg      ClientConfig
	tr       *quic.Transport   // guarded by mu after NewClient
	old      []*quic.Transport // transports left by Migrate, closed with the client
	tlsConf  *tls.Config
	ownConn  net.PacketConn
	counters Counters
	nextID   atomic.Uint32

	mu       sync.Mutex
	cur      *clientConn   // nil while disconnected
	ready    chan struct{} // closed while cur != nil
	previous uint64        // last session id, for Hello.Previous

	relayCounters []proto.Counter // from the last Pong
}

// RelayCounters are the counters of the relay's last Pong (with
// CapCounters), for `unmap status`.
func (c *Client) RelayCounters() []proto.Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.relayCounters
}

// NewClient checks cfg and opens the client's socket.
func NewClient(cfg ClientConfig) (*Client, error) {
	o, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: o, ready: make(chan struct{})}
	pc := o.PacketConn
	if pc == nil {
		if pc, err = net.ListenPacket("udp", ":0"); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		c.ownConn = pc
	}
	// Non-empty connection IDs let the relay follow the edge to a new
	// address when the CGNAT rebinds (RFC 9000 §9.5).
	c.tr = &quic.Transport{Conn: pc, ConnectionIDLength: 8}
	c.tlsConf = pki.ClientConfig(o.Identity, o.RelayCAs, pki.ClientOptions{
		ServerName: o.ServerName, NextProtos: []string{proto.ALPN}, Time: o.Time,
	})
	// Session tickets make a reconnect a resumed handshake; 0-RTT stays
	// off (SPEC.md §1).
	c.tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return c, nil
}

// Counters are the client's named counters.
func (c *Client) Counters() *Counters { return &c.counters }

// LocalAddr is the client's UDP address.
func (c *Client) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tr.Conn.LocalAddr()
}

// Welcome is the current session's grant, or nil while disconnected.
func (c *Client) Welcome() *proto.Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	return c.cur.welcome
}

// WaitConnected waits until a session is up (Welcome received and the
// replay sent) and returns its grant.
func (c *Client) WaitConnected(ctx context.Context) (*proto.Welcome, error) {
	cc, err := c.waitReady(ctx)
	if err != nil {
		return nil, err
	}
	return cc.welcome, nil
}

func (c *Client) waitReady(ctx context.Context) (*clientConn, error) {
	for {
		c.mu.Lock()
		cc, ch := c.cur, c.ready
		c.mu.Unlock()
		if cc != nil {
			return cc, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Run keeps a session with the relay until ctx ends, then says Goodbye
// and closes the socket. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	defer c.close()
	bo := backoff{min: c.cfg.MinBackoff, max: c.cfg.MaxBackoff}
	for {
		welcomed, retry, err := c.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.cfg.Handler.Disconnected(err)
		if welcomed {
			bo.reset()
		}
		wait := max(bo.next(), retry)
		c.counters.inc(mReconnects)
		if why := c.handshakeRefusal(err); why != "" {
			// Not a network hiccup: say why, and do not hammer the relay
			// with a certificate it will refuse again (refusal.go).
			wait = max(wait, c.cfg.MaxBackoff)
			c.counters.inc(mHandshakesRefused)
			c.cfg.Log.Warn(why, "err", err, "retry_in", wait)
		} else {
			c.cfg.Log.Info("control channel down", "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (c *Client) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.old {
		tr.Close()
	}
	c.tr.Close()
	if c.ownConn != nil {
		c.ownConn.Close()
	}
}

// Open asks the relay to map an outbound flow, waiting for a session if
// there is none. The client sets m.ID. A refusal returns the grant and
// its code as the error, so errors.Is(err, proto.CodeQuotaExceeded).
func (c *Client) Open(ctx context.Context, m *proto.FlowOpen) (*proto.FlowGrant, error) {
	cc, err := c.waitReady(ctx)
	if err != nil {
		return nil, err
	}
	o := *m
	o.ID = c.nextID.Add(1)
	ch := make(chan *proto.FlowGrant, 1)
	cc.mu.Lock()
	cc.pending[o.ID] = ch
	cc.mu.Unlock()
	defer func() {
		cc.mu.Lock()
		delete(cc.pending, o.ID)
		cc.mu.Unlock()
	}()
	sent := time.Now()
	if err := cc.w.send(&o); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	select {
	case g := <-ch:
		c.counters.observeGrant(time.Since(sent))
		if g.Result == proto.CodeOK && o.Relay.IsValid() && g.Relay != o.Relay {
			// The relay granted another R than the one the edge picked
			// and may already be sending to: do not install it.
			g = &proto.FlowGrant{ID: g.ID, Result: proto.CodeInternal}
		}
		if g.Result != proto.CodeOK {
			c.counters.code(fFlowRefused, g.Result)
			return g, g.Result
		}
		c.counters.inc(mFlowsOpened)
		return g, nil
	case <-cc.done:
		return nil, ErrDisconnected
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close tells the relay a flow ended. With no session it returns
// ErrDisconnected: the next replay leaves the flow out anyway.
func (c *Client) Close(f session.Flow, reason proto.Code) error {
	c.mu.Lock()
	cc := c.cur
	c.mu.Unlock()
	if cc == nil {
		return ErrDisconnected
	}
	c.counters.inc(mFlowsClosed)
	return cc.w.send(&proto.FlowClose{Flow: f, Reason: reason})
}

// Migrate moves the session to a new local UDP socket without a new
// handshake (QUIC path migration), as when the edge's WAN address
// changed; later reconnects dial from pc too. The caller owns pc and
// closes it after Run has returned.
func (c *Client) Migrate(ctx context.Context, pc net.PacketConn) error {
	c.mu.Lock()
	cc := c.cur
	c.mu.Unlock()
	if cc == nil {
		return ErrDisconnected
	}
	tr := &quic.Transport{Conn: pc, ConnectionIDLength: 8}
	p, err := cc.qconn.AddPath(tr)
	if err != nil {
		return fmt.Errorf("control: migrate: %w", err)
	}
	if err := p.Probe(ctx); err != nil {
		return fmt.Errorf("control: migrate: probe: %w", err)
	}
	if err := p.Switch(); err != nil {
		return fmt.Errorf("control: migrate: %w", err)
	}
	c.mu.Lock()
	c.old = append(c.old, c.tr)
	c.tr = tr
	c.mu.Unlock()
	c.counters.inc(mMigrations)
	return nil
}

// clientConn is one session's connection.
type clientConn struct {
	c          *Client
	conn       quicConn   // qconn, or a fake in the dispatch fuzz target
	qconn      *quic.Conn // for path migration
	str        quicStream
	w          *wire
	welcome    *proto.Welcome
	resumed    bool          // TLS session resumption
	offerSlots chan struct{} // bounds offers being decided at once

	mu       sync.Mutex
	pending  map[uint32]chan *proto.FlowGrant
	done     chan struct{}
	retry    time.Duration // asked for by the relay's Goodbye
	err      error         // why the session ended, if known before the close
	lastPong time.Time
	pingSeq  uint32    // the last Ping's
	pingAt   time.Time // when it was sent; zero once its Pong came (RTT)
}

func (cc *clientConn) setErr(err error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
	}
	cc.mu.Unlock()
}

// session dials, says Hello, replays and serves one connection. It
// reports whether a Welcome arrived and how long the relay asked to wait.
func (c *Client) session(ctx context.Context) (welcomed bool, retry time.Duration, err error) {
	cc, err := c.dial(ctx)
	if err != nil {
		c.counters.inc(mDialFailed)
		return false, 0, err
	}
	c.mu.Lock()
	c.previous = cc.welcome.SessionID
	c.mu.Unlock()
	c.cfg.Handler.Connected(cc.welcome)
	go cc.readLoop()
	if err := cc.replay(); err != nil {
		cc.conn.CloseWithError(quic.ApplicationErrorCode(proto.CodeInternal), "replay failed")
		<-cc.done
		return true, 0, err
	}
	c.mu.Lock()
	c.cur = cc
	close(c.ready)
	c.mu.Unlock()
	c.counters.inc(mSessionsStarted)
	if cc.resumed {
		c.counters.inc(mSessionsResumed)
	}
	c.cfg.Log.Info("control channel up", "relay", c.cfg.Relay, "session", cc.welcome.SessionID, "prefix", cc.welcome.Prefix)

	pingStop := make(chan struct{})
	go cc.pinger(pingStop)
	select {
	case <-cc.done:
	case <-ctx.Done():
		sayGoodbye(cc.conn, cc.str, cc.w, &proto.Goodbye{Code: proto.CodeShutdown, Reason: "edge stopping"})
		<-cc.done
	}
	close(pingStop)
	c.mu.Lock()
	c.cur = nil
	c.ready = make(chan struct{})
	c.mu.Unlock()
	cc.mu.Lock()
	retry, err = cc.retry, cc.err
	cc.mu.Unlock()
	if err == nil {
		err = peerError(context.Cause(cc.conn.Context()))
	}
	if err == nil {
		err = ErrDisconnected
	}
	return true, retry, err
}

// dial makes the connection and waits for Welcome.
func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	addr, err := net.ResolveUDPAddr("udp", c.cfg.Relay)
	if err != nil {
		return nil, fmt.Errorf("control: relay %s: %w", c.cfg.Relay, err)
	}
	c.mu.Lock()
	tr := c.tr
	c.mu.Unlock()
	conn, err := tr.Dial(ctx, addr, c.tlsConf, &quic.Config{
		HandshakeIdleTimeout:  c.cfg.DialTimeout,
		MaxIdleTimeout:        3 * c.cfg.Keepalive,
		KeepAlivePeriod:       c.cfg.Keepalive,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("control: dial %s: %w", c.cfg.Relay, peerError(err))
	}
	// Read once, now: quic-go's ConnectionState is not synchronised with
	// a later path switch (Migrate).
	resumed := conn.ConnectionState().TLS.DidResume
	fail := func(code proto.Code, err error) (*clientConn, error) {
		conn.CloseWithError(quic.ApplicationErrorCode(code), err.Error())
		return nil, peerError(err)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fail(proto.CodeInternal, err)
	}
	w := newWire(str, c.cfg.MaxMessage)
	c.mu.Lock()
	hello := c.cfg.Hello
	hello.Version = proto.Version
	hello.Previous = c.previous
	c.mu.Unlock()
	if err := w.send(&hello); err != nil {
		return fail(proto.CodeInternal, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		str.SetReadDeadline(dl)
	}
	m, err := w.recv(func() { c.counters.inc(mAdvisorySkipped) })
	str.SetReadDeadline(time.Time{})
	if err != nil {
		// The relay refuses a session by closing with the code; the
		// Goodbye before it may or may not have been read.
		if cause := context.Cause(conn.Context()); cause != nil {
			return nil, peerError(cause)
		}
		return fail(proto.CodeOf(err), err)
	}
	switch m := m.(type) {
	case *proto.Welcome:
		cc := &clientConn{c: c, conn: conn, qconn: conn, str: str, w: w, welcome: m, resumed: resumed, offerSlots: make(chan struct{}, MaxPendingOffers),
			pending: map[uint32]chan *proto.FlowGrant{}, done: make(chan struct{}), lastPong: time.Now()}
		return cc, nil
	case *proto.Goodbye:
		conn.CloseWithError(quic.ApplicationErrorCode(proto.CodeOK), "")
		return nil, fmt.Errorf("control: relay refused the session (%s): %w", m.Reason, m.Code)
	default:
		return fail(proto.CodeProtocolViolation, fmt.Errorf("control: %v instead of welcome: %w", m.Type(), proto.CodeProtocolViolation))
	}
}

// replay sends the edge's table in batches, always ending with Last.
func (cc *clientConn) replay() error {
	all := cc.c.cfg.Handler.Snapshot()
	for {
		n := min(len(all), proto.MaxReplayEntries)
		if err := cc.w.send(&proto.Replay{Last: n == len(all), Entries: all[:n]}); err != nil {
			return err
		}
		cc.c.counters.addN(mReplayEntries, uint64(n))
		all = all[n:]
		if len(all) == 0 {
			return nil
		}
	}
}

// readLoop dispatches the relay's messages until the connection ends.
func (cc *clientConn) readLoop() {
	defer close(cc.done)
	c := cc.c
	h := c.cfg.Handler
	for {
		m, err := cc.w.recv(func() { c.counters.inc(mAdvisorySkipped) })
		if err != nil {
			if code := proto.CodeOf(err); code != proto.CodeInternal {
				c.counters.code(fConnClosed, code)
				cc.setErr(fmt.Errorf("control: bad message from the relay: %w", err))
				cc.conn.CloseWithError(quic.ApplicationErrorCode(code), err.Error())
			}
			return
		}
		switch m := m.(type) {
		case *proto.FlowGrant:
			cc.mu.Lock()
			ch := cc.pending[m.ID]
			delete(cc.pending, m.ID)
			cc.mu.Unlock()
			if ch == nil {
				c.counters.inc(mLateReplies)
				continue
			}
			ch <- m
		case *proto.FlowOffer:
			select {
			case cc.offerSlots <- struct{}{}:
				go func() {
					defer func() { <-cc.offerSlots }()
					cc.offer(m)
				}()
			default: // the LAN is not answering fast enough: refuse, do not pile up
				c.counters.code(fOfferRefused, proto.CodeNoResources)
				cc.w.send(&proto.OfferReply{ID: m.ID, Result: proto.CodeNoResources})
			}
		case *proto.CarrierBound:
			h.Bound(m)
		case *proto.CarrierMoved:
			if mh, ok := h.(MoveHandler); ok {
				mh.Moved(m)
			}
		case *proto.FlowClose:
			h.Closed(m)
		case *proto.ICMPError:
			c.counters.inc(mICMPErrorsReceived)
			if ih, ok := h.(ICMPErrorHandler); ok {
				ih.ICMPError(m)
			} else {
				c.counters.inc(mICMPErrorsUnhandled)
			}
		case *proto.ReplayDone:
			c.counters.inc(mReplaysDone)
			if m.Refused > 0 {
				c.cfg.Log.Warn("relay refused replayed flows", "refused", m.Refused, "accepted", m.Accepted)
			}
		case *proto.Ping:
			cc.w.send(&proto.Pong{Seq: m.Seq, Counters: c.pingCounters()})
		case *proto.Pong:
			cc.mu.Lock()
			cc.lastPong = time.Now()
			if m.Seq == cc.pingSeq && !cc.pingAt.IsZero() {
				c.counters.observePing(cc.lastPong.Sub(cc.pingAt))
				cc.pingAt = time.Time{}
			}
			cc.mu.Unlock()
			c.mu.Lock()
			c.relayCounters = m.Counters
			c.mu.Unlock()
		case *proto.Goodbye:
			cc.mu.Lock()
			cc.retry = time.Duration(m.RetryMS) * time.Millisecond
			cc.mu.Unlock()
			c.counters.code(fGoodbye, m.Code)
			cc.setErr(fmt.Errorf("%w (%s): %w", ErrGoodbye, m.Reason, m.Code))
			cc.conn.CloseWithError(quic.ApplicationErrorCode(proto.CodeOK), "goodbye")
			return
		default:
			c.counters.code(fConnClosed, proto.CodeProtocolViolation)
			cc.setErr(fmt.Errorf("control: %v from the relay: %w", m.Type(), proto.CodeProtocolViolation))
			cc.conn.CloseWithError(quic.ApplicationErrorCode(proto.CodeProtocolViolation), fmt.Sprintf("%v from the relay", m.Type()))
			return
		}
	}
}

func (cc *clientConn) offer(m *proto.FlowOffer) {
	r := cc.c.cfg.Handler.Offer(m)
	if r == nil {
		r = &proto.OfferReply{Result: proto.CodeRefused}
	}
	r.ID = m.ID
	if r.Result == proto.CodeOK {
		cc.c.counters.inc(mOffersAccepted)
	} else {
		cc.c.counters.code(fOfferRefused, r.Result)
	}
	cc.w.send(r)
}

// pinger sends a Ping every keepalive period and gives up on a relay
// that answered none of the last 3. QUIC's own PINGs keep the CGNAT
// mapping, but they are too small (under 42 bytes) for a restarted relay
// to answer with a stateless reset; a Ping with counters is not, so a
// crashed relay is noticed within one period, not at the idle timeout.
func (cc *clientConn) pinger(stop <-chan struct{}) {
	period := cc.c.cfg.Keepalive
	t := time.NewTicker(period)
	defer t.Stop()
	var seq uint32
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		cc.mu.Lock()
		stale := time.Since(cc.lastPong) > 3*period
		cc.mu.Unlock()
		if stale {
			cc.c.counters.code(fConnClosed, proto.CodeTimeout)
			cc.setErr(fmt.Errorf("control: no pong for %v: %w", 3*period, proto.CodeTimeout))
			cc.conn.CloseWithError(quic.ApplicationErrorCode(proto.CodeTimeout), "no pong")
			return
		}
		seq++
		cc.mu.Lock()
		cc.pingSeq, cc.pingAt = seq, time.Now()
		cc.mu.Unlock()
		cc.w.send(&proto.Ping{Seq: seq, Counters: cc.c.pingCounters()})
	}
}

// pingCounters are the channel's own counters, then the agent's.
func (c *Client) pingCounters() []proto.Counter {
	out := []proto.Counter{
		{ID: proto.CounterFlowOpens, Value: c.counters.vals().Get(mFlowsOpened)},
		{ID: proto.CounterFlowCloses, Value: c.counters.vals().Get(mFlowsClosed)},
		{ID: proto.CounterRefusals, Value: c.counters.sum(fFlowRefused) + c.counters.sum(fOfferRefused)},
	}
	if c.cfg.Counters != nil {
		out = append(out, c.cfg.Counters()...)
	}
	return out[:min(len(out), proto.MaxCounters)]
}
