package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// AgentFiles are an agent's TLS files (its certificate, key and the CA
// file it trusts), read and checked.
type AgentFiles struct {
	ID   *Identity
	Cert tls.Certificate
	CAs  *x509.CertPool
	Left time.Duration // until the certificate expires
}

// FileError is a failure of one of an agent's TLS files. Which names the
// file the way both agents' configuration does: "tls.cert/tls.key",
// "tls.cert" or "tls.ca".
type FileError struct {
	Which string
	Err   error
}

func (e *FileError) Error() string { return e.Which + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// LoadAgentFiles reads an agent's TLS files and checks what a peer would
// otherwise refuse with one TLS alert that does not say why: the key is
// the certificate's and its owner's only, the CA file holds CA
// certificates, and fit (CheckServer, CheckEdge) says the certificate
// serves the agent's role and is valid now. Errors are *FileError.
func LoadAgentFiles(certPath, keyPath, caPath string, fit func(*x509.Certificate) (time.Duration, error)) (*AgentFiles, error) {
	id, cert, err := LoadIdentity(certPath, keyPath)
	if err != nil {
		return nil, &FileError{"tls.cert/tls.key", err}
	}
	left, err := fit(id.Cert)
	if err != nil {
		return nil, &FileError{"tls.cert", fmt.Errorf("%s: %w", certPath, err)}
	}
	cas, err := LoadPool(caPath)
	if err != nil {
		return nil, &FileError{"tls.ca", err}
	}
	return &AgentFiles{ID: id, Cert: cert, CAs: cas, Left: left}, nil
}

// ExpiryNote says when the certificate (read from path) expires: a
// warning within ExpiryWarning, what `--check` prints.
func (f *AgentFiles) ExpiryNote(path string) string {
	when := f.ID.Cert.NotAfter.UTC().Format(time.DateTime)
	if f.Left < ExpiryWarning {
		return fmt.Sprintf("warning: %s expires in %v (%s UTC): issue a new one", path, f.Left.Round(time.Hour), when)
	}
	return fmt.Sprintf("%s valid until %s UTC", path, when)
}
