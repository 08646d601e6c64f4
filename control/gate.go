package control

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// Defaults of the handshake bounds (ServerConfig.MaxHandshakes,
// RetryAbove). A half-open handshake costs the relay a connection's state
// for up to the 5 s handshake timeout; a source that never answers (a
// spoofed address) would otherwise hold it for nothing. Below RetryAbove
// handshakes in progress every edge gets in at once; above it, a source
// must first prove its address with a QUIC Retry (one more round trip,
// no state kept at the relay until it answers, RFC 9000 §8.1.2), so a
// spoofed flood holds nothing. MaxHandshakes bounds what sources that do
// answer can hold: beyond it a new handshake is refused (quic-go answers
// CONNECTION_REFUSED and the edge retries after its backoff). 512 is
// several times the herd of edges reconnecting at once after a relay
// restart, spread by their jittered backoff.
const (
	DefaultMaxHandshakes = 512
	DefaultRetryAbove    = 64
)

// errTooManyHandshakes refuses a handshake over ServerConfig.MaxHandshakes.
var errTooManyHandshakes = errors.New("control: too many handshakes in progress")

// handshakeGate counts the handshakes in progress (from the client's
// first Initial until the server accepts the connection or it fails) and
// decides Retry and refusal from that count.
type handshakeGate struct {
	n          atomic.Int64
	max, retry int64
	counters   *Counters
}

// gateKey finds a connection's ticket in its context.
type gateKey struct{}

// gateTicket is one handshake's place in the gate, given back once.
type gateTicket struct {
	once sync.Once
	g    *handshakeGate
}

func (t *gateTicket) release() { t.once.Do(func() { t.g.n.Add(-1) }) }

// verify is quic.Transport.VerifySourceAddress: a Retry for an
// unvalidated source while many handshakes are in progress.
func (g *handshakeGate) verify(net.Addr) bool {
	if g.n.Load() >= g.retry {
		g.counters.inc(mHandshakesRetrySent)
		return true
	}
	return false
}

// enter is quic.Transport.ConnContext: it takes a place for the new
// connection's handshake, or refuses it when none is left. The place is
// given back when the server accepts the connection (done) or when the
// connection ends before that (its context ends).
func (g *handshakeGate) enter(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	for {
		n := g.n.Load()
		if n >= g.max {
			g.counters.inc(mHandshakesRefused)
			return nil, errTooManyHandshakes
		}
		if g.n.CompareAndSwap(n, n+1) {
			break
		}
	}
	t := &gateTicket{g: g}
	context.AfterFunc(ctx, t.release)
	return context.WithValue(ctx, gateKey{}, t), nil
}

// done gives back the place of a connection whose handshake completed.
func (g *handshakeGate) done(conn *quic.Conn) {
	if t, ok := conn.Context().Value(gateKey{}).(*gateTicket); ok {
		t.release()
	}
}

// inProgress is the number of handshakes in progress.
func (g *handshakeGate) inProgress() int { return int(g.n.Load()) }
