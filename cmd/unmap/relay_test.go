package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/test/bpffs"
)

// TestRelayUnpin: `unmap relay --unpin` removes the relay's pin_path
// (what a stopped agent left forwarding) and starts no agent; a pin_path
// outside a bpf filesystem is refused and left as it is.
func TestRelayUnpin(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.MkdirAll(plain, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain, "link-relay-ext"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runUnpin(t, dir, plain); err == nil || !strings.Contains(err.Error(), "not on a bpf filesystem") {
		t.Errorf("--unpin of an ordinary folder: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(plain, "link-relay-ext")); err != nil {
		t.Errorf("the ordinary folder after a refused --unpin: %v", err)
	}

	pins := filepath.Join(bpffs.ForTest(t), "unmap-relay")
	if err := os.MkdirAll(filepath.Join(pins, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := runUnpin(t, dir, pins)
	if err != nil {
		t.Fatalf("relay --unpin: %v\n%s", err, out)
	}
	if _, err := os.Stat(pins); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pin_path after --unpin: %v", err)
	}
	if !strings.Contains(out, "removed "+pins) {
		t.Errorf("output %q does not say what was removed", out)
	}
}

func runUnpin(t *testing.T, dir, pins string) (string, error) {
	t.Helper()
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
	err := cmd.Execute()
	return out.String(), err
}
