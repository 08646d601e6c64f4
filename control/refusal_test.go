package control

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control/pki"
)

// syncBuffer is a log both ends write from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRefusedCertificateExplained: an edge whose certificate expired
// connects. The relay refuses it with the one alert TLS has for it,
// bad_certificate; it logs the reason with the edge's address and the
// certificate's subject. The edge logs that the relay refused its
// certificate, why it probably did (its own check finds it expired), and
// waits its longest backoff before trying again.
func TestRefusedCertificateExplained(t *testing.T) {
	p := newPKI(t)
	var relayLog, edgeLog syncBuffer
	srv := startRelay(t, p, newFakeRelay(), "", func(c *ServerConfig) { c.Log = slog.New(slog.NewTextHandler(&relayLog, nil)) })
	expired, err := p.ca.IssueEdge("home-1", pki.Validity{NotBefore: time.Now().Add(-48 * time.Hour), Length: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), edge, func(c *ClientConfig) {
		c.Identity = expired.TLS()
		c.MaxBackoff = 300 * time.Millisecond
		c.Log = slog.New(slog.NewTextHandler(&edgeLog, nil))
	})
	waitCounter(t, c.Counters(), "handshakes_refused", 1)
	waitCounter(t, srv.Counters(), "tls_refused_expired", 1)

	rl := relayLog.String()
	for _, want := range []string{"edge certificate refused", "reason=expired", "CN=home-1", fmt.Sprintf("remote=127.0.0.1:%d", c.LocalAddr().(*net.UDPAddr).Port)} {
		if !strings.Contains(rl, want) {
			t.Errorf("relay log lacks %q:\n%s", want, rl)
		}
	}
	el := edgeLog.String()
	for _, want := range []string{"the relay refused the TLS handshake (alert: tls: bad certificate)", "certificate has expired", "retry_in=300ms"} {
		if !strings.Contains(el, want) {
			t.Errorf("edge log lacks %q:\n%s", want, el)
		}
	}
}

// TestEdgeRefusalExplained: an edge that does not trust the relay's
// certificate says so, with the reason, and backs off as long.
func TestEdgeRefusalExplained(t *testing.T) {
	p := newPKI(t)
	srv := startRelay(t, p, newFakeRelay(), "")
	var edgeLog syncBuffer
	c := startEdge(t, p, "home-1", srv.Addr(), newFakeEdge(), func(c *ClientConfig) {
		c.RelayCAs = newPKI(t).ca.Pool()
		c.MaxBackoff = 300 * time.Millisecond
		c.Log = slog.New(slog.NewTextHandler(&edgeLog, nil))
	})
	waitCounter(t, c.Counters(), "handshakes_refused", 1)
	if el := edgeLog.String(); !strings.Contains(el, "this edge refused the relay's certificate (unknown-ca)") || !strings.Contains(el, "retry_in=300ms") {
		t.Errorf("edge log:\n%s", el)
	}
}
