package forward

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/lab"
	"golang.org/x/sys/unix"
)

// netipPort is a on the port next to lab.EchoPort, free of echo servers.
func netipPort(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, lab.EchoPort+1) }

// checkMSS connects from ns to to and checks the connection's MSS is the
// full 1500-byte MTU's (1440 for IPv6, 1460 for IPv4) both ways: the
// host advertised it, and the peer's SYN/ACK, through unmap, said the same
// (Linux reports both less 12 bytes when timestamps are in use).
func checkMSS(t *testing.T, ctx context.Context, ns *lab.NS, to netip.AddrPort) {
	t.Helper()
	want := uint32(lab.MTU - 40 - 20)
	network := "tcp6"
	if to.Addr().Is4() {
		want, network = lab.MTU-20-20, "tcp4"
	}
	c, err := ns.Dial(ctx, network, to.String())
	if err != nil {
		t.Errorf("connect %v: %v", to, err)
		return
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var gerr error
	if err := raw.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
		t.Fatalf("TCP_INFO: %v %v", err, gerr)
	}
	if info.Options&1 != 0 { // TCPI_OPT_TIMESTAMPS
		want -= 12 // Linux reports both less the timestamp option
	}
	if info.Advmss != want || info.Snd_mss != want {
		t.Errorf("connection to %v: advertised MSS %d, send MSS %d; want %d (options %#x)", to, info.Advmss, info.Snd_mss, want, info.Options)
	}
}
