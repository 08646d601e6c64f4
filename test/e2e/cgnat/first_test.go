package cgnat

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestFirstPacketNotLost: a new subscriber's very first packet, the one
// that finds no block and makes the relay grant one, reaches srv4: a
// single UDP datagram, sent once, is echoed back within a second (it is
// not sent again, so a lost one fails the test), and a TCP connect from
// another new subscriber completes before the 1 s a lost SYN waits for
// its retransmission. The relay counts both packets resent through its
// datapath.
func TestFirstPacketNotLost(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort)
	sub := l.NS(lab.Sub)
	udpSub, tcpSub := netip.MustParseAddr("100.64.100.11"), netip.MustParseAddr("100.64.100.12")
	for _, a := range []netip.Addr{udpSub, tcpSub} {
		if err := sub.AddAddr(string(lab.Relay), netip.PrefixFrom(a, lab.SubNet.Bits())); err != nil {
			t.Fatal(err)
		}
	}

	var c *net.UDPConn
	if err := sub.Do(func() (err error) {
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: udpSub.AsSlice()}, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := e2e.EchoUDP(c, "first-udp", 2*time.Second); err != nil {
		t.Errorf("the first UDP datagram of a new subscriber, sent once: %v", err)
	}
	if _, ok := srv.PeerOf("first-udp"); !ok {
		t.Errorf("srv4 never saw the first datagram")
	}

	var d net.Dialer
	d.LocalAddr = &net.TCPAddr{IP: tcpSub.AsSlice()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	var conn net.Conn
	if err := sub.Do(func() (err error) {
		conn, err = d.DialContext(ctx, "tcp4", to.String())
		return err
	}); err != nil {
		t.Fatalf("TCP from a new subscriber: %v", err)
	}
	took := time.Since(start)
	conn.Close()
	if took >= 900*time.Millisecond {
		t.Errorf("TCP connect from a new subscriber took %v: its first SYN was lost and sent again", took)
	}
	e2e.Section(t, u.D.RelaySock, "cgnat", "the relay's cgnat counts", func(m map[string]uint64) bool {
		return m["grants"] == 2 && m["resent"] == 2 && m["resend-failed"] == 0
	})
}

// TestNAT64FirstPacketNotLost: TestFirstPacketNotLost for IPv6-only
// subscribers (NAT64): sub6's /64 holds no block at first, so its first
// UDP datagram to srv4 in 64:ff9b::/96, sent once, makes the relay grant
// the /64 one and is sent through the datapath again, echoed within two
// seconds; a TCP connect from a host of another new /64 (routed by the
// relay to sub6) completes before a lost SYN's 1 s retransmission. The
// relay counts both packets resent and two grants, one a /64.
func TestNAT64FirstPacketNotLost(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := netip.AddrPortFrom(lab.NAT64Addr(lab.Srv4Addr), lab.EchoPort)
	sub6 := l.NS(lab.Sub6)
	tcpHost := netip.MustParseAddr("2001:db8:64:2::2") // a /64 of inside6 beside sub6's
	if err := sub6.AddAddr(string(lab.Relay), netip.PrefixFrom(tcpHost, 64)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := l.NS(lab.Relay).Output(ctx, "ip", "-6", "route", "add", netip.PrefixFrom(tcpHost, 64).Masked().String(),
		"via", lab.Sub6Addr.String(), "dev", string(lab.Sub6)); err != nil {
		t.Fatalf("relay: route to %v: %v %s", tcpHost, err, out)
	}

	var c *net.UDPConn
	if err := sub6.Do(func() (err error) {
		c, err = net.DialUDP("udp6", &net.UDPAddr{IP: lab.Sub6Addr.AsSlice()}, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := e2e.EchoUDP(c, "first-udp6", 2*time.Second); err != nil {
		t.Errorf("the first UDP datagram of a new /64, sent once: %v", err)
	}
	if _, ok := srv.PeerOf("first-udp6"); !ok {
		t.Errorf("srv4 never saw the first datagram")
	}

	var d net.Dialer
	d.LocalAddr = &net.TCPAddr{IP: tcpHost.AsSlice()}
	start := time.Now()
	var conn net.Conn
	if err := sub6.Do(func() (err error) {
		conn, err = d.DialContext(ctx, "tcp6", to.String())
		return err
	}); err != nil {
		t.Fatalf("TCP from a new /64: %v", err)
	}
	took := time.Since(start)
	conn.Close()
	if took >= 900*time.Millisecond {
		t.Errorf("TCP connect from a new /64 took %v: its first SYN was lost and sent again", took)
	}
	e2e.Section(t, u.D.RelaySock, "cgnat", "the relay's cgnat counts", func(m map[string]uint64) bool {
		return m["grants"] == 2 && m["resent"] == 2 && m["resend-failed"] == 0
	})
}
