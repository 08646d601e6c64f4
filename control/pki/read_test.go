package pki

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadKeyRefusals: a key path that is a FIFO is refused at once (an
// open of it would wait for a writer and hang the agent's start); a key
// others may read is refused with ErrKeyMode naming chmod 600; an empty
// file, a certificate and an encrypted key are named as such.
func TestLoadKeyRefusals(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("", Validity{})
	id, _ := ca.IssueEdge("a", Validity{})
	if err := id.Save(dir, "a.pem", "a-key.pem", false); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "a-key.pem")
	if _, err := LoadKey(key); err != nil {
		t.Fatalf("a 0600 key: %v", err)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := LoadKey(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO as key: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("LoadKey of a FIFO hangs")
	}

	b, _ := os.ReadFile(key)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		p := filepath.Join(dir, "open.pem")
		os.Remove(p)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		if _, err := LoadKey(p); !errors.Is(err, ErrKeyMode) || !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Errorf("key of mode %04o: %v", mode, err)
		}
	}
	ro := filepath.Join(dir, "ro.pem")
	if err := os.WriteFile(ro, b, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(ro); err != nil {
		t.Errorf("a 0400 key: %v", err)
	}

	for name, tc := range map[string]struct{ data, want string }{
		"empty":       {"", "the file is empty"},
		"certificate": {string(CertPEM(id.Cert)), "holds CERTIFICATE"},
		"encrypted":   {"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"},
		"not pem":     {"hello", "not a PEM file"},
	} {
		p := filepath.Join(dir, name+".pem")
		if err := os.WriteFile(p, []byte(tc.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKey(p); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v; want it to name %s and say %q", name, err, p, tc.want)
		}
	}
}

// TestOwnCertificateChecks: each agent checks its own certificate as its
// peer will: expired or not yet valid, a relay with a client-only
// certificate, an edge with a server certificate or another site's.
func TestOwnCertificateChecks(t *testing.T) {
	ca, _ := NewCA("", Validity{})
	relay, _ := ca.IssueRelay([]string{"relay.test"}, nil, Validity{})
	edge, _ := ca.IssueEdge("home", Validity{})
	now := time.Now()
	if _, err := CheckServer(relay.Cert, now); err != nil {
		t.Errorf("relay certificate: %v", err)
	}
	if _, err := CheckServer(edge.Cert, now); !errors.Is(err, ErrNotServer) {
		t.Errorf("edge certificate as the relay's: %v", err)
	}
	if _, err := CheckEdge(edge.Cert, "home", now); err != nil {
		t.Errorf("edge certificate: %v", err)
	}
	if _, err := CheckEdge(relay.Cert, "home", now); !errors.Is(err, ErrNotClient) {
		t.Errorf("relay certificate as an edge's: %v", err)
	}
	if _, err := CheckEdge(edge.Cert, "shop", now); err == nil {
		t.Error("another site's certificate accepted")
	}
	if _, err := CheckServer(relay.Cert, relay.Cert.NotAfter.Add(time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("after NotAfter: %v", err)
	}
	if _, err := CheckEdge(edge.Cert, "home", edge.Cert.NotBefore.Add(-time.Second)); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("before NotBefore: %v", err)
	}
	if left, _ := CheckValid(edge.Cert, edge.Cert.NotAfter.Add(-time.Hour)); left != time.Hour {
		t.Errorf("left %v, want 1h", left)
	}
}

// TestLogExpiry: what a running agent logs of its certificate: nothing
// while it has more than ExpiryWarning left, a warning within it, an
// error once it has expired.
func TestLogExpiry(t *testing.T) {
	ca, _ := NewCA("", Validity{})
	id, _ := ca.IssueEdge("home", Validity{})
	end := id.Cert.NotAfter
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{end.Add(-ExpiryWarning - time.Hour), ""},
		{end.Add(-ExpiryWarning + time.Hour), "level=WARN msg=\"certificate expires soon"},
		{end.Add(time.Hour), "level=ERROR msg=\"certificate not valid"},
	} {
		var buf bytes.Buffer
		LogExpiry(id.Cert, "edge.pem", slog.New(slog.NewTextHandler(&buf, nil)), tc.at)
		if tc.want == "" && buf.Len() != 0 || !strings.Contains(buf.String(), tc.want) {
			t.Errorf("at %v: logged %q, want %q", tc.at, buf.String(), tc.want)
		}
	}
}
