package control

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// stallConn is a client's socket that sends everything and delivers
// only what keep lets through: a client that starts a handshake and
// never finishes it.
type stallConn struct {
	net.PacketConn
	keep func([]byte) bool
}

func (c *stallConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || c.keep(b[:n]) {
			return n, addr, err
		}
	}
}

// isRetry reports whether a QUIC v1 packet is a Retry (long header,
// type 3).
func isRetry(b []byte) bool { return len(b) > 0 && b[0]&0x80 != 0 && (b[0]>>4)&3 == 3 }

// stallHandshakes starts n handshakes that never complete, each from its
// own socket, and returns when they have all sent their Initials.
func stallHandshakes(t *testing.T, p *testPKI, relay net.Addr, n int, keep func([]byte) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	tlsConf := pki.ClientConfig(p.edge(t, "home-1"), p.ca.Pool(), pki.ClientOptions{ServerName: "relay.test", NextProtos: []string{proto.ALPN}})
	for range n {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: &stallConn{pc, keep}}
		t.Cleanup(func() { tr.Close(); pc.Close() })
		wg.Go(func() {
			if conn, err := tr.Dial(ctx, relay, tlsConf, &quic.Config{HandshakeIdleTimeout: 3 * time.Second}); err == nil {
				conn.CloseWithError(0, "")
				t.Error("a stalled handshake completed")
			}
		})
	}
}

// TestHandshakesBounded: clients that start a QUIC handshake and never
// finish it each hold a connection's state at the relay until the
// handshake timeout (5 s). Sources that do not answer (spoofed ones)
// get a Retry once RetryAbove handshakes are in progress and hold
// nothing; sources that answer the Retry and then stall are refused at
// MaxHandshakes. The count in progress stays within the bound, and an
// edge still gets in while the spoofed flood goes on.
func TestHandshakesBounded(t *testing.T) {
	p := newPKI(t)
	const retryAbove, maxHS, flood = 2, 4, 12

	t.Run("silent sources get a Retry", func(t *testing.T) {
		srv := startRelay(t, p, newFakeRelay(), "", func(c *ServerConfig) { c.RetryAbove, c.MaxHandshakes = retryAbove, maxHS })
		stallHandshakes(t, p, srv.Addr(), flood, func([]byte) bool { return false })
		waitCounter(t, srv.Counters(), "handshakes_retry_sent", flood-retryAbove)
		if n := srv.Handshakes(); n > retryAbove {
			t.Errorf("%d handshakes in progress, want at most %d", n, retryAbove)
		}
		edge := newFakeEdge()
		c := startEdge(t, p, "home-1", srv.Addr(), edge)
		waitConnected(t, c)
		if n := srv.Handshakes(); n > retryAbove {
			t.Errorf("%d handshakes in progress after the edge's, want at most %d", n, retryAbove)
		}
	})

	t.Run("stalling after the Retry is refused", func(t *testing.T) {
		srv := startRelay(t, p, newFakeRelay(), "", func(c *ServerConfig) { c.RetryAbove, c.MaxHandshakes = retryAbove, maxHS })
		stallHandshakes(t, p, srv.Addr(), flood, isRetry)
		waitCounter(t, srv.Counters(), "handshakes_refused", 1)
		if n := srv.Handshakes(); n > maxHS {
			t.Errorf("%d handshakes in progress, want at most %d", n, maxHS)
		}
	})
}
