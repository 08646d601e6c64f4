package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelayLookup: `unmap relay lookup` answers from the block log at
// the time asked (a grant, then its release, then another subscriber's
// grant of the same block), refuses what is not an address:port or a
// time, and in deterministic mode answers from the formula.
func TestRelayLookup(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "blocks.log")
	lines := `{"time":"2026-12-03T05:00:00Z","event":"grant","subscriber":"100.64.0.5","address":"203.0.113.128","port_first":40960,"port_last":41471,"protocol":"tcp,udp,icmp"}
{"time":"2026-12-03T05:10:00Z","event":"release","subscriber":"100.64.0.5","address":"203.0.113.128","port_first":40960,"port_last":41471,"protocol":"tcp,udp,icmp"}
{"time":"2026-12-03T05:20:00Z","event":"grant","subscriber":"100.64.0.9","address":"203.0.113.128","port_first":40960,"port_last":41471,"protocol":"tcp,udp,icmp"}
`
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(extra string, args ...string) (string, error) {
		cfg := filepath.Join(dir, "relay.yaml")
		yaml := `tls: {ca: ca.pem, cert: relay.pem, key: relay-key.pem}
interface: eth0
addresses: [198.51.100.6]
sites:
  - {id: home, prefix: "2001:db8:5::/56"}
cgnat: {interface: eth1, inside: 100.64.0.0/24, pool: 203.0.113.128/26, ports: 40960-65535, log: ` + log + extra + `}
`
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := newRelayCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"lookup", "-c", cfg}, args...))
		err := cmd.Execute()
		return out.String(), err
	}
	for _, c := range []struct {
		at, want string
	}{
		{"2026-12-03T05:05:00Z", "subscriber 100.64.0.5, block 203.0.113.128:40960-41471 granted 2026-12-03T05:00:00Z, until 2026-12-03T05:10:00Z"},
		{"2026-12-03T05:15:00Z", "no subscriber held it"},
		{"2026-12-03T05:25:00Z", "subscriber 100.64.0.9"},
	} {
		out, err := run("", "203.0.113.128:41000", "--at", c.at)
		if got := out + errString(err); !strings.Contains(got, c.want) {
			t.Errorf("at %s: %q, want %q", c.at, got, c.want)
		}
	}
	for _, bad := range [][]string{{"203.0.113.128"}, {"203.0.113.128:41000", "--at", "yesterday"}} {
		if _, err := run("", bad...); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	out, err := run(", deterministic: true, blocks_per_subscriber: 1", "203.0.113.129:40970")
	if err != nil || !strings.Contains(out, "subscriber 100.64.0.48 (deterministic mode") {
		t.Errorf("deterministic: %q %v", out, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
