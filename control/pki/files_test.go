package pki

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.SaveCA(dir, false); err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) || !back.Key.Equal(ca.Key) {
		t.Fatal("CA changed through save and load")
	}
	relay, err := back.IssueRelay(nil, []netip.Addr{netip.MustParseAddr("2001:db8::6")}, Validity{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "relay")
	if err := relay.Save(out, RelayFile, RelayKeyFile, false); err != nil {
		t.Fatal(err)
	}
	if err := back.SaveCert(out, false); err != nil {
		t.Fatal(err)
	}
	// Issuing into the CA's own folder: an identical ca.pem is no conflict.
	if err := back.SaveCert(dir, false); err != nil {
		t.Fatalf("SaveCert over identical ca.pem: %v", err)
	}
	_, tc, err := LoadIdentity(filepath.Join(out, RelayFile), filepath.Join(out, RelayKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !tc.Leaf.Equal(relay.Cert) {
		t.Error("relay certificate changed through save and load")
	}
	pool, err := LoadPool(filepath.Join(out, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay.Cert.Verify(x509VerifyServer(pool)); err != nil {
		t.Errorf("saved relay does not verify against saved CA: %v", err)
	}
}

func TestFileModes(t *testing.T) {
	old := umask(0)
	defer umask(old)
	dir := t.TempDir()
	ca, err := NewCA("", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.SaveCA(dir, false); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{CAFile: 0o644, CAKeyFile: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestNoOverwriteWithoutForce(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	edge, err := ca.IssueEdge("home", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	// Only the key is in the way: nothing must be written, not even the
	// certificate, and the error names the key file.
	keyPath := filepath.Join(dir, EdgeKeyFile)
	if err := os.WriteFile(keyPath, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = edge.Save(dir, EdgeFile, EdgeKeyFile, false)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("Save over existing key = %v, want ErrExists naming %s", err, keyPath)
	}
	if b, _ := os.ReadFile(keyPath); string(b) != "precious" {
		t.Error("existing key was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, EdgeFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("certificate written although the key was refused: %v", err)
	}
	// With force both are replaced, and the key is 0600 again even if the
	// old file was not.
	os.Chmod(keyPath, 0o644)
	if err := edge.Save(dir, EdgeFile, EdgeKeyFile, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadIdentity(filepath.Join(dir, EdgeFile), keyPath); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
		t.Errorf("forced key mode %v", st.Mode().Perm())
	}
	// A different ca.pem in the way is refused too.
	other, _ := NewCA("other", Validity{})
	if err := ca.SaveCert(dir, false); err != nil {
		t.Fatal(err)
	}
	if err := other.SaveCert(dir, false); !errors.Is(err, ErrExists) {
		t.Errorf("SaveCert over a different ca.pem = %v", err)
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("", Validity{})
	a, _ := ca.IssueEdge("a", Validity{})
	b, _ := ca.IssueEdge("b", Validity{})
	if err := a.Save(dir, "a.pem", "a-key.pem", false); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(dir, "b.pem", "b-key.pem", false); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	big := filepath.Join(dir, "big.pem")
	os.WriteFile(big, bytes.Repeat([]byte("x"), maxPEMFile+1), 0o600)
	for _, tc := range []struct {
		cert, key, mention string
	}{
		{"a.pem", "b-key.pem", "b-key.pem"},
		{"junk.pem", "a-key.pem", "junk.pem"},
		{"a.pem", "junk.pem", "junk.pem"},
		{"big.pem", "a-key.pem", "big.pem"},
		{"missing.pem", "a-key.pem", "missing.pem"},
	} {
		_, _, err := LoadIdentity(filepath.Join(dir, tc.cert), filepath.Join(dir, tc.key))
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("LoadIdentity(%s, %s) = %v, want an error naming %s", tc.cert, tc.key, err, tc.mention)
		}
	}
	if _, err := LoadPool(filepath.Join(dir, "a.pem")); err == nil {
		t.Error("LoadPool accepted a leaf as CA")
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), CAFile) {
		t.Errorf("LoadCA without ca.pem = %v", err)
	}
}

func TestLeafMayNotOutliveCA(t *testing.T) {
	ca, err := NewCA("", Validity{Length: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueEdge("home", Validity{}); err == nil {
		t.Error("edge certificate outlives its CA")
	}
	if _, err := ca.IssueEdge("home", Validity{Length: time.Hour}); err != nil {
		t.Error(err)
	}
	if _, err := ca.IssueRelay(nil, nil, Validity{Length: time.Hour}); err == nil {
		t.Error("relay certificate without names")
	}
	if _, err := ca.IssueRelay([]string{"198.51.100.6"}, nil, Validity{Length: time.Hour}); err == nil {
		t.Error("IP given as DNS name accepted")
	}
	if _, err := ca.IssueRelay([]string{"bad name"}, nil, Validity{Length: time.Hour}); err == nil {
		t.Error("bad DNS name accepted")
	}
}
