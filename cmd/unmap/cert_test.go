package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control/pki"
)

func runCert(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newCertCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestCertCommands makes a CA, a relay and an edge with the command, then
// proves the files work: the relay and edge complete a mutual TLS
// handshake from them and the relay reads the site id.
func TestCertCommands(t *testing.T) {
	dir := t.TempDir()
	caDir, relayDir, edgeDir := filepath.Join(dir, "ca"), filepath.Join(dir, "relay"), filepath.Join(dir, "home")
	if out, err := runCert(t, "ca", "--out", caDir); err != nil {
		t.Fatalf("cert ca: %v\n%s", err, out)
	}
	if out, err := runCert(t, "relay", "--ca", caDir, "--name", "relay.example", "--ip", "198.51.100.6", "--out", relayDir, "--days", "30"); err != nil {
		t.Fatalf("cert relay: %v\n%s", err, out)
	}
	out, err := runCert(t, "edge", "--ca", caDir, "--site", "home", "--out", edgeDir)
	if err != nil {
		t.Fatalf("cert edge: %v\n%s", err, out)
	}
	if !strings.Contains(out, filepath.Join(edgeDir, pki.EdgeKeyFile)) {
		t.Errorf("output does not list the key file:\n%s", out)
	}
	if out, err := runCert(t, "show", filepath.Join(edgeDir, pki.EdgeFile)); err != nil || !strings.Contains(out, "site:        home") {
		t.Errorf("cert show: %v\n%s", err, out)
	}
	if _, err := runCert(t, "show", filepath.Join(edgeDir, pki.EdgeKeyFile)); err == nil {
		t.Error("cert show of a key file succeeded")
	}
	for _, p := range []string{filepath.Join(caDir, pki.CAKeyFile), filepath.Join(relayDir, pki.RelayKeyFile), filepath.Join(edgeDir, pki.EdgeKeyFile)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", p, st.Mode().Perm())
		}
	}

	_, relayCert, err := pki.LoadIdentity(filepath.Join(relayDir, pki.RelayFile), filepath.Join(relayDir, pki.RelayKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(relayCert.Leaf.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("--days 30 gave a certificate ending in %v", d)
	}
	relayPool, err := pki.LoadPool(filepath.Join(relayDir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	_, edgeCert, err := pki.LoadIdentity(filepath.Join(edgeDir, pki.EdgeFile), filepath.Join(edgeDir, pki.EdgeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	edgePool, err := pki.LoadPool(filepath.Join(edgeDir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	b.SetDeadline(time.Now().Add(10 * time.Second))
	cerr := make(chan error, 1)
	go func() {
		c := tls.Client(b, pki.ClientConfig(edgeCert, edgePool, pki.ClientOptions{ServerName: "198.51.100.6"}))
		cerr <- c.Handshake()
		c.Read(make([]byte, 1)) // take the server's session tickets
	}()
	s := tls.Server(a, pki.ServerConfig(relayCert, relayPool, pki.ServerOptions{}))
	if err := s.Handshake(); err != nil {
		t.Fatalf("relay handshake: %v", err)
	}
	if err := <-cerr; err != nil {
		t.Fatalf("edge handshake: %v", err)
	}
	if site, err := pki.PeerSite(s.ConnectionState()); site != "home" || err != nil {
		t.Errorf("PeerSite = %q, %v", site, err)
	}
}

func TestCertRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCert(t, "ca", "--out", dir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	_, err := runCert(t, "ca", "--out", dir)
	if !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), filepath.Join(dir, pki.CAFile)) {
		t.Errorf("second cert ca = %v, want ErrExists naming the file", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile)); !bytes.Equal(before, after) {
		t.Error("CA key was replaced without --force")
	}
	if _, err := runCert(t, "ca", "--out", dir, "--force"); err != nil {
		t.Errorf("cert ca --force: %v", err)
	}
	// Issuing an edge into the CA's folder: ca.pem is identical, not in the way.
	if _, err := runCert(t, "edge", "--ca", dir, "--site", "home", "--out", dir); err != nil {
		t.Errorf("edge into the CA folder: %v", err)
	}
	if _, err := runCert(t, "edge", "--ca", dir, "--site", "home", "--out", dir); !errors.Is(err, pki.ErrExists) {
		t.Errorf("second edge = %v, want ErrExists", err)
	}
}

func TestCertBadFlags(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCert(t, "ca", "--out", dir); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"edge", "--ca", dir, "--site", "Not_Valid", "--out", filepath.Join(dir, "x")},
		{"edge", "--ca", dir, "--out", filepath.Join(dir, "x")},
		{"relay", "--ca", dir, "--out", filepath.Join(dir, "x")},
		{"relay", "--ca", dir, "--ip", "not-an-ip", "--out", filepath.Join(dir, "x")},
		{"relay", "--ca", dir, "--name", "r.example", "--days", "0", "--out", filepath.Join(dir, "x")},
		{"relay", "--ca", dir, "--name", "r.example", "--days", "4000", "--out", filepath.Join(dir, "x")},
		{"edge", "--ca", filepath.Join(dir, "nope"), "--site", "home", "--out", filepath.Join(dir, "x")},
	} {
		if _, err := runCert(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x", pki.EdgeKeyFile)); err == nil {
		t.Error("a refused command wrote a key")
	}
}
