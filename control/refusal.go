package control

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/control/pki"
)

// A refused certificate reaches the edge as one TLS alert,
// bad_certificate, whatever the reason (crypto/tls sends no other from
// its verification callback). The relay knows the reason: it logs it
// with the edge's address and the certificate's subject. The edge maps
// the alert to a line that says where the reason is, checks its own
// certificate for the likely causes it can see, and waits its longest
// backoff before trying again: a certificate does not fix itself.

// refusalLog bounds the relay's log lines about refused certificates: a
// stranger can make one per handshake. Each is counted (tls_refused_*);
// lines past refusalLogMax a second are not written.
type refusalLog struct {
	mu     sync.Mutex
	second time.Time
	n      int
}

const refusalLogMax = 10

func (l *refusalLog) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Truncate(time.Second); !s.Equal(l.second) {
		l.second, l.n = s, 0
	}
	l.n++
	return l.n <= refusalLogMax
}

// refused counts and logs a client certificate the relay refused.
func (s *Server) refused(e *pki.RefusedError) {
	s.counters.tls(e.Reason)
	if s.refusals.allow(time.Now()) {
		s.cfg.Log.Warn("edge certificate refused", "remote", e.Remote, "subject", e.Subject, "reason", e.Reason, "err", e.Err)
	}
}

// handshakeRefusal says, for a session that failed in the TLS handshake,
// which side refused what and what to look at; "" for other failures.
func (c *Client) handshakeRefusal(err error) string {
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() && te.Remote {
		alert := tls.AlertError(uint8(te.ErrorCode - quic.TransportErrorCode(0x100)))
		if !certAlert(alert) {
			return fmt.Sprintf("the relay refused the TLS handshake (alert: %v)", alert)
		}
		hint := "the relay logs the reason with this edge's address"
		if leaf := c.cfg.Identity.Leaf; leaf != nil {
			now := time.Now()
			if c.cfg.Time != nil {
				now = c.cfg.Time()
			}
			if _, cerr := pki.CheckEdge(leaf, c.cfg.Hello.Site, now); cerr != nil {
				hint = "this edge's certificate: " + cerr.Error()
			} else {
				hint = "this edge's certificate is valid here: the relay may not trust its CA, or refuses it otherwise; " + hint
			}
		}
		return fmt.Sprintf("the relay refused the TLS handshake (alert: %v): %s", alert, hint)
	}
	if errors.Is(err, ErrHandshake) || isLocalTLS(err) {
		return fmt.Sprintf("this edge refused the relay's certificate (%s)", pki.Classify(err))
	}
	return ""
}

// isLocalTLS reports whether err is this side's refusal of the peer's
// certificate.
func isLocalTLS(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.ErrorCode.IsCryptoError() && !te.Remote
}

// certAlert reports whether a TLS alert is about a certificate (RFC 8446
// §6.2): bad, unsupported, revoked, expired or unknown certificate,
// unknown CA, certificate required.
func certAlert(a tls.AlertError) bool {
	switch a {
	case 42, 43, 44, 45, 46, 48, 116:
		return true
	}
	return false
}
