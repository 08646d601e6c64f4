package edge

import (
	"crypto/x509"
	"errors"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/control/pki"
)

// loadTLS reads the edge's TLS files and checks what the relay would
// otherwise refuse without saying why (pki.LoadAgentFiles); the
// certificate must be a client's naming the configured site. Errors name
// the field and the file.
func (s *Settings) loadTLS(now time.Time) (*pki.AgentFiles, error) {
	f, err := pki.LoadAgentFiles(s.TLS.Cert, s.TLS.Key, s.TLS.CA, func(c *x509.Certificate) (time.Duration, error) {
		return pki.CheckEdge(c, s.Site, now)
	})
	if fe := (*pki.FileError)(nil); errors.As(err, &fe) {
		return nil, config.Errorf(fe.Which, "%v", fe.Err)
	}
	return f, err
}

// CheckTLS is what `unmap edge --check` says of the TLS files: an error,
// or a line about the certificate's expiry.
func (s *Settings) CheckTLS(now time.Time) (string, error) {
	f, err := s.loadTLS(now)
	if err != nil {
		return "", err
	}
	return f.ExpiryNote(s.TLS.Cert), nil
}
