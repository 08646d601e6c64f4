package e2e

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
)

// UDPAddr is a as a *net.UDPAddr.
func UDPAddr(a netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(a) }

// PortRange parses a port range "lo-hi" (a config's carrier_ports).
func PortRange(t *testing.T, s string) (first, last uint16) {
	t.Helper()
	lo, hi, _ := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil {
		t.Fatalf("port range %q", s)
	}
	return uint16(a), uint16(b)
}

// EchoServer starts an echo server (TCP and UDP, lab.EchoPort, every
// address) in ns for the rest of the test.
func EchoServer(t *testing.T, ns *lab.NS) *lab.EchoServer {
	t.Helper()
	srv, err := ns.StartEcho(netip.AddrPortFrom(netip.IPv6Unspecified(), lab.EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// Slowpath is an agent's slowpath status section: its counters by name.
type Slowpath map[string]uint64

// EchoUDP sends token on a connected UDP socket and checks the echo.
func EchoUDP(c net.Conn, token string, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte(token + "\n")); err != nil {
		return err
	}
	buf := make([]byte, 256)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) == token+"\n" {
			return nil
		}
		// A late echo of an earlier try: read on.
	}
}

// Retry calls f until it succeeds or d has passed.
func Retry(d time.Duration, f func() error) error {
	end := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(end) {
			return err
		}
	}
}

// RelaySlowpath is the relay's status, read for its slowpath section.
type RelaySlowpath struct {
	Slowpath map[string]uint64 `json:"slowpath"`
}

// IsSIGTERM tells the exit Stop's SIGTERM caused from a failure.
func IsSIGTERM(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}
