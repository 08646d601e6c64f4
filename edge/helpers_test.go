package edge

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/control/pki"
)

func confTLS(dir string) config.TLSFiles {
	return config.TLSFiles{CA: filepath.Join(dir, pki.CAFile), Cert: filepath.Join(dir, pki.EdgeFile), Key: filepath.Join(dir, pki.EdgeKeyFile)}
}

func confRange(first, last uint16) config.PortRange {
	return config.PortRange{First: first, Last: last}
}

// testAgent is an agent without a datapath, its carrier ports E the
// range carrierPorts, its WAN address hsWAN.
func testAgent(tb testing.TB, carrierPorts string) *agent {
	tb.Helper()
	c := Config{Site: "home", Relay: "127.0.0.1:1", LAN: "lan", WAN: "wan", CarrierPorts: carrierPorts, TLS: confTLS(tb.TempDir())}
	s, err := c.Validate()
	if err != nil {
		tb.Fatal(err)
	}
	a, err := newAgent(s, hsWAN, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
