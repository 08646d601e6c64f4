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

// TestHairpinUDP: subscriber A's UDP socket has a mapping (it sent to
// srv4, which saw its public address:port); subscriber B sends to that
// public address:port and A receives it from B's public address:port,
// not B's inside address (RFC 4787 REQ-9), turned round in XDP on the
// subscribers' interface; A's answer to that address reaches B the same
// way.
func TestHairpinUDP(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort))
	sub := l.NS(lab.Sub)
	bAddr := netip.MustParseAddr("100.64.100.3")
	if err := sub.AddAddr(string(lab.Relay), netip.PrefixFrom(bAddr, lab.SubNet.Bits())); err != nil {
		t.Fatal(err)
	}
	listen := func(a netip.Addr) *net.UDPConn {
		t.Helper()
		var c *net.UDPConn
		if err := sub.Do(func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: a.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// public makes c's mapping by an exchange with srv4 and returns the
	// public address:port srv4 saw it from.
	public := func(c *net.UDPConn, token string) netip.AddrPort {
		t.Helper()
		buf := make([]byte, 256)
		for range 20 { // the first packet waits for a grant
			if _, err := c.WriteToUDP([]byte(token+"\n"), to); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := c.ReadFromUDP(buf); err == nil {
				p, ok := srv.PeerOf(token)
				if !ok {
					t.Fatalf("srv4 never saw %q", token)
				}
				return p.Remote
			}
		}
		t.Fatalf("no echo of %q", token)
		return netip.AddrPort{}
	}
	a, b := listen(lab.SubAddr), listen(bAddr)
	pubA, pubB := public(a, "hairpin-a"), public(b, "hairpin-b")
	if !lab.SubPool4.Contains(pubA.Addr()) || !lab.SubPool4.Contains(pubB.Addr()) || pubA == pubB {
		t.Fatalf("public A %v, B %v", pubA, pubB)
	}
	// exchange sends from one subscriber to the other's public
	// address:port and checks where it arrives from.
	exchange := func(from, at *net.UDPConn, dst, wantSrc netip.AddrPort, what string) {
		t.Helper()
		buf := make([]byte, 256)
		for range 10 {
			if _, err := from.WriteToUDPAddrPort([]byte(what), dst); err != nil {
				t.Fatal(err)
			}
			_ = at.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, src, err := at.ReadFromUDPAddrPort(buf)
			if err != nil {
				continue
			}
			if string(buf[:n]) != what || netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) != wantSrc {
				t.Fatalf("%s: got %q from %v, want %q from %v", what, buf[:n], src, what, wantSrc)
			}
			return
		}
		t.Fatalf("%s: nothing arrived", what)
	}
	exchange(b, a, pubA, pubB, "b-to-a")
	exchange(a, b, pubB, pubA, "a-to-b")
}

// TestHairpinTCP: subscriber B listens on a port it also connects to
// srv4 from (its mapping: srv4 sees B's public address:port); subscriber
// A, with a mapping of its own to srv4, connects from that same port to
// B's public address:port. B accepts the connection from A's public
// address:port (RFC 5382 REQ-8, RFC 4787 REQ-9), not A's inside one, and
// a line crosses each way: the SYN, the SYN/ACK and the data are all
// turned round by relay_sub on the subscribers' interface (the relay's
// kernel has no NAT rule, and the pool routes nowhere back to sub).
func TestHairpinTCP(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := lab.HairpinTCP(ctx, l.NS(lab.Sub), srv, netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort), lab.SubAddr, lab.SubAddr2)
	t.Logf("%+v", h)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Error(err)
	}
	if !lab.SubPool4.Contains(h.PubA.Addr()) || !lab.SubPool4.Contains(h.PubB.Addr()) {
		t.Errorf("public A %v, B %v: outside the pool %v", h.PubA, h.PubB, lab.SubPool4)
	}
}
