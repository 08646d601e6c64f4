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
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// Authorizer decides whether site may open a session and what it is
// granted. It returns the grant as a Welcome (the server fills in
// Version, SessionID, and narrows Capabilities to what the edge offered),
// or an error wrapping a proto.Code, typically proto.CodeUnknownSite.
// The server itself checks Hello's wishes against the grant.
type Authorizer func(site string, hello *proto.Hello) (*proto.Welcome, error)

// Handler is the relay agent's side of the sessions. The server calls it
// from each session's reader goroutine in message order, so a handler
// sees a flow's open before its close; it should not block for long.
// Flows whose site endpoint is not the session's grant, and relay ends R
// an edge picked outside its reserved ranges, are refused before the
// handler sees them; with CapEdgeChoosesR, Open must grant the R the edge
// picked (FlowOpen.Relay) or refuse.
type Handler interface {
	// Started is called once Welcome is sent, before any replay.
	Started(s *Session)
	// Open maps an outbound flow. The server sets the grant's ID.
	Open(s *Session, m *proto.FlowOpen) *proto.FlowGrant
	// Replayed installs one replayed flow; it returns CodeOK or why not.
	Replayed(s *Session, e *proto.ReplayEntry) proto.Code
	// ReplayDone says the edge's table is complete: flows of the site
	// that were not replayed can go.
	ReplayDone(s *Session)
	// Closed removes a flow the edge closed.
	Closed(s *Session, m *proto.FlowClose)
	// Ended is called once when the session ends; err says why.
	Ended(s *Session, err error)
}

// ServerConfig configures the relay's side of the channel. Zero values of
// optional fields mean the defaults in their comments.
type ServerConfig struct {
	Addr       string         // UDP address to listen on; default ":443"
	PacketConn net.PacketConn // a socket to use instead of Addr (tests, socket activation)

	Identity  tls.Certificate  // the relay's certificate and key
	ClientCAs *x509.CertPool   // CA that signs the edges
	Time      func() time.Time // clock for certificate checks; default time.Now

	// TicketKeys encrypt TLS session tickets (the first one issues, all
	// decrypt). Keeping them across restarts lets reconnecting edges
	// resume instead of doing a full handshake; default: random keys per
	// process, so resumption works until the relay restarts.
	TicketKeys [][32]byte

	// StatelessResetKey lets a restarted relay tell edges at once that
	// their connection is gone (RFC 9000 §10.3) instead of letting them
	// wait for the idle timeout. Keep it across restarts.
	StatelessResetKey *[32]byte

	Authorize Authorizer // required
	Handler   Handler    // required

	MaxMessage   int           // largest message body read; default proto.MaxBody
	HelloTimeout time.Duration // wait for Hello; default 10s
	OfferTimeout time.Duration // wait for an OfferReply; default 5s
	IdleTimeout  time.Duration // QUIC idle timeout; default 60s (edges send keepalives every ≤25s)
	// What a session may leave unwritten to an edge that does not read
	// (sendqueue.go): SendTimeout bounds one write, default 5s;
	// SendQueue the bytes queued, default 1 MiB. Past either the
	// session is closed (an ICMPError finding the queue full is dropped
	// instead).
	SendTimeout  time.Duration
	SendQueue    int
	replayEvery  time.Duration // tests: replayEvery (session.go) instead
	Capabilities proto.Capabilities
	Counters     func(*Session) []proto.Counter // counters sent in Pong; may be nil
	Log          *slog.Logger                   // default: discard

	// Handshakes in progress at once (gate.go): above RetryAbove an
	// unvalidated source must answer a QUIC Retry first; at
	// MaxHandshakes new ones are refused. Defaults DefaultRetryAbove and
	// DefaultMaxHandshakes.
	MaxHandshakes int
	RetryAbove    int
}

func (c *ServerConfig) withDefaults() (ServerConfig, error) {
	o := *c
	if o.Authorize == nil || o.Handler == nil {
		return o, errors.New("control: ServerConfig needs Authorize and Handler")
	}
	if len(o.Identity.Certificate) == 0 || o.ClientCAs == nil {
		return o, errors.New("control: ServerConfig needs Identity and ClientCAs")
	}
	if o.Addr == "" {
		o.Addr = ":443"
	}
	if o.MaxMessage <= 0 || o.MaxMessage > proto.MaxBody {
		o.MaxMessage = proto.MaxBody
	}
	if o.HelloTimeout <= 0 {
		o.HelloTimeout = 10 * time.Second
	}
	if o.OfferTimeout <= 0 {
		o.OfferTimeout = 5 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 5 * time.Second
	}
	if o.SendQueue <= 0 {
		o.SendQueue = DefaultSendQueue
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = DefaultMaxHandshakes
	}
	if o.RetryAbove <= 0 {
		o.RetryAbove = min(DefaultRetryAbove, o.MaxHandshakes)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// DefaultSendQueue is ServerConfig.SendQueue's default: some 25000
// FlowClose or CarrierBound messages (an expiry sweep that ends many
// flows at once), or 800 full ICMP errors, on top of what the QUIC
// stream's flow control window already holds.
const DefaultSendQueue = 1 << 20

// Server accepts edges. Make one with Listen.
type Server struct {
	cfg      ServerConfig
	tr       *quic.Transport
	ln       *quic.Listener
	ownConn  net.PacketConn // closed by Close if Listen opened it
	counters Counters
	gate     handshakeGate
	refusals refusalLog

	mu       sync.Mutex
	sessions map[string]*Session // by site: one session per site
	nextID   uint64
	closed   bool
	wg       sync.WaitGroup
}

// Listen starts a relay control listener and serves it until ctx ends or
// Close is called.
func Listen(ctx context.Context, cfg ServerConfig) (*Server, error) {
	o, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: o, sessions: map[string]*Session{}, nextID: uint64(time.Now().UnixNano())}
	pc := o.PacketConn
	if pc == nil {
		if pc, err = net.ListenPacket("udp", o.Addr); err != nil {
			return nil, fmt.Errorf("control: listen %s: %w", o.Addr, err)
		}
		s.ownConn = pc
	}
	s.gate = handshakeGate{max: int64(o.MaxHandshakes), retry: int64(o.RetryAbove), counters: &s.counters}
	s.tr = &quic.Transport{Conn: pc, ConnectionIDLength: 8, VerifySourceAddress: s.gate.verify, ConnContext: s.gate.enter}
	if o.StatelessResetKey != nil {
		k := quic.StatelessResetKey(*o.StatelessResetKey)
		s.tr.StatelessResetKey = &k
	}
	tlsConf := pki.ServerConfig(o.Identity, o.ClientCAs, pki.ServerOptions{
		NextProtos: []string{proto.ALPN},
		Time:       o.Time,
		Refused:    s.refused,
	})
	if len(o.TicketKeys) > 0 {
		tlsConf.SetSessionTicketKeys(o.TicketKeys)
	}
	s.ln, err = s.tr.Listen(tlsConf, &quic.Config{
		HandshakeIdleTimeout:  5 * time.Second,
		MaxIdleTimeout:        o.IdleTimeout,
		MaxIncomingStreams:    1, // the control stream; nothing else
		MaxIncomingUniStreams: -1,
	})
	if err != nil {
		s.closeSocket()
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	s.wg.Add(1)
	go s.accept(ctx)
	context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// Addr is the UDP address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Counters are the server's named counters.
func (s *Server) Counters() *Counters { return &s.counters }

// Handshakes is the number of QUIC handshakes in progress (half-open
// connections), bounded by ServerConfig.MaxHandshakes.
func (s *Server) Handshakes() int { return s.gate.inProgress() }

// Session returns the current session of site, or nil.
func (s *Server) Session(site string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[site]
}

// Close says Goodbye(shutdown) to every edge, closes their connections
// and stops listening. It waits for the sessions' goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	all := make([]*Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ss := range all {
		wg.Go(func() { ss.Shutdown(0, "relay shutting down") })
	}
	wg.Wait()
	err := s.ln.Close()
	// Connections still before Hello would otherwise hold Close for the
	// Hello timeout; the sessions have had their Goodbye.
	s.tr.Close()
	s.wg.Wait()
	s.closeSocket()
	return err
}

func (s *Server) closeSocket() {
	if s.ownConn != nil {
		s.ownConn.Close()
	}
}

func (s *Server) accept(ctx context.Context) {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			return
		}
		s.gate.done(conn)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(ctx, conn)
		}()
	}
}

// closeConn ends a connection with a code, counting it.
func (s *Server) closeConn(conn quicConn, f *codes, code proto.Code, msg string) {
	s.counters.code(f, code)
	conn.CloseWithError(quic.ApplicationErrorCode(code), msg)
}

// serve runs one connection: Hello, Welcome, then the session's messages.
func (s *Server) serve(ctx context.Context, conn *quic.Conn) {
	// Read once, now: quic-go's ConnectionState is not synchronised with
	// a later path switch (NAT rebinding).
	tlsState := conn.ConnectionState().TLS
	site, err := pki.PeerSite(tlsState)
	if err != nil { // VerifyConnection let it through, so this is a bug
		s.closeConn(conn, fSessionRefused, proto.CodeInternal, err.Error())
		return
	}
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HelloTimeout)
	str, err := conn.AcceptStream(hctx)
	cancel()
	if err != nil {
		s.closeConn(conn, fConnClosed, proto.CodeTimeout, "no control stream")
		return
	}
	w := newWire(str, s.cfg.MaxMessage)
	str.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	m, err := w.recv(func() { s.counters.inc(mAdvisorySkipped) })
	str.SetReadDeadline(time.Time{})
	if err != nil {
		code := proto.CodeOf(err)
		if code == proto.CodeInternal {
			if conn.Context().Err() != nil { // the edge went away
				s.counters.inc(mConnLostBeforeHello)
				return
			}
			code = proto.CodeTimeout // the read deadline
		}
		s.closeConn(conn, fConnClosed, code, err.Error())
		return
	}
	hello, ok := m.(*proto.Hello)
	if !ok {
		s.closeConn(conn, fConnClosed, proto.CodeProtocolViolation, fmt.Sprintf("%v before hello", m.Type()))
		return
	}
	grant, code, msg := s.authorize(site, hello)
	if code != proto.CodeOK {
		s.cfg.Log.Info("session refused", "site", site, "remote", conn.RemoteAddr(), "code", code, "why", msg)
		w.send(&proto.Goodbye{Code: code, Reason: clipReason(msg)})
		s.closeConn(conn, fSessionRefused, code, msg)
		return
	}
	ss := s.newSession(site, grant, conn, str, w)
	if ss == nil {
		conn.CloseWithError(quic.ApplicationErrorCode(proto.CodeShutdown), "relay shutting down")
		return
	}
	s.run(ss, tlsState.DidResume)
}

// authorize checks a Hello against the certificate's site and the grant.
func (s *Server) authorize(site string, h *proto.Hello) (*proto.Welcome, proto.Code, string) {
	if h.Site != site {
		return nil, proto.CodeSiteMismatch, fmt.Sprintf("hello names site %q, certificate %q", h.Site, site)
	}
	g, err := s.cfg.Authorize(site, h)
	if err != nil {
		code := proto.CodeOf(err)
		return nil, code, err.Error()
	}
	if g == nil {
		return nil, proto.CodeUnknownSite, "no grant for site " + site
	}
	if code := checkHello(h, g); code != proto.CodeOK {
		return nil, code, fmt.Sprintf("site %s asked for %v / %v; granted %v / %v", site, h.WantPrefix, h.WantIPv4, g.Prefix, g.PublicIPv4)
	}
	w := *g
	w.Version = min(h.Version, proto.Version)
	w.Capabilities = g.Capabilities & h.Capabilities
	if s.cfg.Capabilities != 0 {
		w.Capabilities &= s.cfg.Capabilities
	}
	return &w, proto.CodeOK, ""
}

func clipReason(s string) string {
	if len(s) > proto.MaxReasonLen {
		return s[:proto.MaxReasonLen]
	}
	return s
}

// newSession registers a session, replacing (and closing) an older one
// of the same site: an edge that reconnects before its old connection
// timed out must not be refused, and one site has one session.
func (s *Server) newSession(site string, g *proto.Welcome, conn *quic.Conn, str *quic.Stream, w *wire) *Session {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.nextID++
	if s.nextID == 0 {
		s.nextID++
	}
	g.SessionID = s.nextID
	ss := &Session{
		srv: s, site: site, grant: g, conn: conn, str: str, w: w, q: newSendQueue(s.cfg.SendQueue), wrote: make(chan struct{}),
		offers: map[uint32]chan *proto.OfferReply{}, done: make(chan struct{}),
	}
	// Welcome first, before anyone who finds the session can queue.
	if _, err := ss.q.push(g); err != nil {
		s.mu.Unlock()
		return nil
	}
	old := s.sessions[site]
	s.sessions[site] = ss
	s.mu.Unlock()
	if old != nil {
		s.counters.inc(mSessionsReplaced)
		old.Shutdown(0, "replaced by a new session of the site")
		<-old.done
	}
	return ss
}

// run starts the session's writer, which sends the Welcome queued first,
// and reads the session's messages until it ends.
func (s *Server) run(ss *Session, resumed bool) {
	go ss.writer()
	s.counters.inc(mSessionsStarted)
	if resumed {
		s.counters.inc(mSessionsResumed)
	}
	s.cfg.Log.Info("session started", "site", ss.site, "session", ss.grant.SessionID, "remote", ss.conn.RemoteAddr())
	s.cfg.Handler.Started(ss)
	err := ss.readLoop()
	ss.end(err)
	<-ss.wrote
	s.mu.Lock()
	if s.sessions[ss.site] == ss {
		delete(s.sessions, ss.site)
	}
	s.mu.Unlock()
	s.counters.inc(mSessionsEnded)
	s.cfg.Handler.Ended(ss, err)
}
