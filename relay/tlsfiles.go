package relay

import (
	"crypto/x509"
	"errors"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/control/pki"
)

// loadTLS reads the relay's TLS files and checks what would otherwise
// surface only in an edge's handshake (pki.LoadAgentFiles); the
// certificate must be a server's. Errors name the field and the file.
func (s *Settings) loadTLS(now time.Time) (*pki.AgentFiles, error) {
	f, err := pki.LoadAgentFiles(s.TLS.Cert, s.TLS.Key, s.TLS.CA, func(c *x509.Certificate) (time.Duration, error) {
		return pki.CheckServer(c, now)
	})
	if fe := (*pki.FileError)(nil); errors.As(err, &fe) {
		return nil, config.Errorf(fe.Which, "%v", fe.Err)
	}
	return f, err
}

// CheckTLS is what `unmap relay --check` says of the TLS files: an
// error, or a line about the certificate's expiry.
func (s *Settings) CheckTLS(now time.Time) (string, error) {
	f, err := s.loadTLS(now)
	if err != nil {
		return "", err
	}
	return f.ExpiryNote(s.TLS.Cert), nil
}
