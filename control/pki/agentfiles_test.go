package pki

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadAgentFiles: a relay's files load for the server role, are
// refused for the edge role with the certificate's field named, and a
// missing CA file names the CA field; the expiry note warns only within
// ExpiryWarning.
func TestLoadAgentFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := ca.IssueRelay([]string{"relay.example"}, nil, Validity{})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.SaveBundle(dir, RelayFile, RelayKeyFile, ca, false); err != nil {
		t.Fatal(err)
	}
	cert, key, caFile := filepath.Join(dir, RelayFile), filepath.Join(dir, RelayKeyFile), filepath.Join(dir, CAFile)
	now := time.Now()
	server := func(c *x509.Certificate) (time.Duration, error) { return CheckServer(c, now) }
	f, err := LoadAgentFiles(cert, key, caFile, server)
	if err != nil {
		t.Fatal(err)
	}
	if !f.ID.Cert.Equal(relay.Cert) || f.Left <= 0 {
		t.Fatalf("loaded %v, %v left", f.ID.Cert.Subject, f.Left)
	}
	if n := f.ExpiryNote(cert); !strings.Contains(n, "valid until") {
		t.Errorf("note %q for a fresh certificate", n)
	}
	f.Left = ExpiryWarning / 2
	if n := f.ExpiryNote(cert); !strings.HasPrefix(n, "warning: ") {
		t.Errorf("note %q within the warning time", n)
	}

	var fe *FileError
	_, err = LoadAgentFiles(cert, key, caFile, func(c *x509.Certificate) (time.Duration, error) { return CheckEdge(c, "site-a", now) })
	if !errors.As(err, &fe) || fe.Which != "tls.cert" || !strings.Contains(err.Error(), cert) {
		t.Errorf("a server certificate for an edge: %v", err)
	}
	_, err = LoadAgentFiles(cert, key, filepath.Join(dir, "none.pem"), server)
	if !errors.As(err, &fe) || fe.Which != "tls.ca" {
		t.Errorf("a missing CA file: %v", err)
	}
	_, err = LoadAgentFiles(cert, cert, caFile, server)
	if !errors.As(err, &fe) || fe.Which != "tls.cert/tls.key" {
		t.Errorf("the certificate as key: %v", err)
	}
}
