package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control/pki"
)

// checkFiles writes a CA, a relay identity and an edge identity into dir
// (relay.pem, relay-key.pem, edge.pem, edge-key.pem, ca.pem), the relay's
// valid for relayFor.
func checkFiles(t *testing.T, dir string, relayFor time.Duration) {
	t.Helper()
	ca, err := pki.NewCA("test CA", pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ca.IssueRelay([]string{"relay.test"}, []netip.Addr{netip.MustParseAddr("198.51.100.6")}, pki.Validity{NotBefore: time.Now().Add(-time.Hour), Length: relayFor})
	if err != nil {
		t.Fatal(err)
	}
	e, err := ca.IssueEdge("home", pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SaveBundle(dir, pki.RelayFile, pki.RelayKeyFile, ca, false); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(dir, pki.EdgeFile, pki.EdgeKeyFile, false); err != nil {
		t.Fatal(err)
	}
}

func runRelayCheck(t *testing.T, dir, cert, key string) (string, error) {
	t.Helper()
	cfg := filepath.Join(dir, "relay.yaml")
	yaml := "tls: {ca: " + filepath.Join(dir, "ca.pem") + ", cert: " + cert + ", key: " + key + `}
interface: eth0
addresses: [198.51.100.6]
sites:
  - {id: home, prefix: "2001:db8:5::/56"}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newRelayCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"-c", cfg, "--check"})
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(5 * time.Second):
		t.Fatal("--check hangs")
	}
	return "", nil
}

// TestRelayCheckOpensTLSFiles: `unmap relay --check` reads the TLS files
// and refuses, naming the file, the field and what to do, what the relay
// could not start with or what every edge would refuse: a key others
// can read, a FIFO (or anything but a regular file) as key (it must not
// hang), the certificate given as the key, an edge's (client-only)
// certificate, an expired one. A certificate that expires within two
// weeks passes with a warning.
func TestRelayCheckOpensTLSFiles(t *testing.T) {
	dir := t.TempDir()
	checkFiles(t, dir, 365*24*time.Hour)
	cert, key := filepath.Join(dir, pki.RelayFile), filepath.Join(dir, pki.RelayKeyFile)
	out, err := runRelayCheck(t, dir, cert, key)
	if err != nil || !strings.Contains(out, "ok") || !strings.Contains(out, "valid until") {
		t.Fatalf("valid files: %v\n%s", err, out)
	}

	open := filepath.Join(dir, "open-key.pem")
	b, _ := os.ReadFile(key)
	if err := os.WriteFile(open, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo-key.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cert, key string
		want            []string
	}{
		{"world-readable key", cert, open, []string{"relay.yaml: tls.cert/tls.key:", open, "mode 0644", "chmod 600 " + open}},
		{"fifo key", cert, fifo, []string{"relay.yaml: tls.cert/tls.key:", fifo, "not a regular file"}},
		{"certificate as key", cert, cert, []string{"relay.yaml: tls.cert/tls.key:", cert, "no PRIVATE KEY or EC PRIVATE KEY block", "holds CERTIFICATE"}},
		{"edge certificate", filepath.Join(dir, pki.EdgeFile), filepath.Join(dir, pki.EdgeKeyFile), []string{"relay.yaml: tls.cert:", pki.EdgeFile, "serverAuth"}},
		{"missing key", cert, filepath.Join(dir, "nope.pem"), []string{"relay.yaml: tls.cert/tls.key:", "nope.pem", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runRelayCheck(t, dir, tc.cert, tc.key)
			if err == nil {
				t.Fatalf("--check passed:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		dir := t.TempDir()
		checkFiles(t, dir, 30*time.Minute) // from an hour ago
		_, err := runRelayCheck(t, dir, filepath.Join(dir, pki.RelayFile), filepath.Join(dir, pki.RelayKeyFile))
		if err == nil || !strings.Contains(err.Error(), "tls.cert") || !strings.Contains(err.Error(), "expired") {
			t.Errorf("expired certificate: %v", err)
		}
	})
	t.Run("expires soon", func(t *testing.T) {
		dir := t.TempDir()
		checkFiles(t, dir, 5*24*time.Hour)
		out, err := runRelayCheck(t, dir, filepath.Join(dir, pki.RelayFile), filepath.Join(dir, pki.RelayKeyFile))
		if err != nil || !strings.Contains(out, "warning") || !strings.Contains(out, "expires in") {
			t.Errorf("certificate expiring in 4 days: %v\n%s", err, out)
		}
	})
}
