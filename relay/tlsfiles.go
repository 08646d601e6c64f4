package relay

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/control/pki"
)

// tlsFiles are the relay's TLS files, read and checked.
type tlsFiles struct {
	id   *pki.Identity
	cert tls.Certificate
	cas  *x509.CertPool
	left time.Duration // until the certificate expires
}

// loadTLS reads the relay's TLS files and checks what would otherwise
// surface only in an edge's handshake: the key is the certificate's and
// its owner's only, the certificate is a server's and valid now, the CA
// file holds CA certificates. Errors name the field and the file.
func (s *Settings) loadTLS(now time.Time) (*tlsFiles, error) {
	id, cert, err := pki.LoadIdentity(s.TLS.Cert, s.TLS.Key)
	if err != nil {
		return nil, config.Errorf("tls.cert/tls.key", "%v", err)
	}
	left, err := pki.CheckServer(id.Cert, now)
	if err != nil {
		return nil, config.Errorf("tls.cert", "%s: %v", s.TLS.Cert, err)
	}
	cas, err := pki.LoadPool(s.TLS.CA)
	if err != nil {
		return nil, config.Errorf("tls.ca", "%v", err)
	}
	return &tlsFiles{id: id, cert: cert, cas: cas, left: left}, nil
}

// CheckTLS is what `unmap relay --check` says of the TLS files: an
// error, or a line about the certificate (a warning when it expires
// within pki.ExpiryWarning).
func (s *Settings) CheckTLS(now time.Time) (string, error) {
	f, err := s.loadTLS(now)
	if err != nil {
		return "", err
	}
	return expiryNote(s.TLS.Cert, f.id.Cert, f.left), nil
}

// expiryNote says when a certificate expires, as a warning within
// pki.ExpiryWarning.
func expiryNote(path string, c *x509.Certificate, left time.Duration) string {
	when := c.NotAfter.UTC().Format(time.DateTime)
	if left < pki.ExpiryWarning {
		return fmt.Sprintf("warning: %s expires in %v (%s UTC): issue a new one", path, left.Round(time.Hour), when)
	}
	return fmt.Sprintf("%s valid until %s UTC", path, when)
}
