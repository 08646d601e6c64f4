package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelayUnpin: `unmap relay --unpin` removes the relay's pin_path
// (what a stopped agent left forwarding) and starts no agent.
func TestRelayUnpin(t *testing.T) {
	dir := t.TempDir()
	pins := filepath.Join(dir, "pins", "unmap-relay")
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pins, "link-relay-ext"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "relay.yaml")
	yaml := `tls: {ca: ca.pem, cert: relay.pem, key: relay-key.pem}
interface: eth0
addresses: [198.51.100.6]
pin_path: ` + pins + `
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
	cmd.SetArgs([]string{"-c", cfg, "--unpin"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("relay --unpin: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(pins); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pin_path after --unpin: %v", err)
	}
	if !strings.Contains(out.String(), "removed "+pins) {
		t.Errorf("output %q does not say what was removed", out.String())
	}
}
