package e2e

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/test/lab"
)

func udpAddr(a netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(a) }

func portRange(t *testing.T, s string) (first, last uint16) {
	t.Helper()
	lo, hi, _ := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil {
		t.Fatalf("port range %q", s)
	}
	return uint16(a), uint16(b)
}

// echoServer starts an echo server (TCP and UDP, lab.EchoPort, every
// address) in ns for the rest of the test.
func echoServer(t *testing.T, ns *lab.NS) *lab.EchoServer {
	t.Helper()
	srv, err := ns.StartEcho(netip.AddrPortFrom(netip.IPv6Unspecified(), lab.EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// netipPort is a on the port next to lab.EchoPort, free of echo servers.
func netipPort(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, lab.EchoPort+1) }
