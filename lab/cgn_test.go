package lab

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// udpAt opens a UDP socket in n bound to addr.
func udpAt(t *testing.T, n *NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	pc, err := n.ListenPacket("udp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return pc.(*net.UDPConn)
}

// recvFrom waits up to d for one datagram and returns its source; the
// zero value when none came.
func recvFrom(t *testing.T, c *net.UDPConn, d time.Duration) netip.AddrPort {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// TestCGNBehaviour characterises the CGN as unmap meets it, from one lan
// socket talking to two srv4 ports:
//   - mapping: preserve mode reuses one public port for both destinations
//     (endpoint-independent); random mode gives each its own (address-
//     and port-dependent);
//   - filtering: in both modes a third srv4 port cannot send in through
//     the mapping (address-and-port-dependent filtering), while the
//     contacted port can answer.
func TestCGNBehaviour(t *testing.T) {
	for _, mode := range []CGNMode{CGNPreserve, CGNRandom} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			l := newForTest(t, Options{CGNMode: mode})
			host := udpAt(t, l.NS(LAN), netip.AddrPortFrom(LANAddr, 40000))
			a := udpAt(t, l.NS(Srv4), netip.AddrPortFrom(Srv4Addr, 7001))
			b := udpAt(t, l.NS(Srv4), netip.AddrPortFrom(Srv4Addr, 7002))
			stranger := udpAt(t, l.NS(Srv4), netip.AddrPortFrom(Srv4Addr, 7003))

			var seen []netip.AddrPort
			for _, srv := range []*net.UDPConn{a, b} {
				to := netip.MustParseAddrPort(srv.LocalAddr().String())
				if _, err := host.WriteToUDPAddrPort([]byte("map me"), to); err != nil {
					t.Fatal(err)
				}
				from := recvFrom(t, srv, 2*time.Second)
				if from.Addr() != CGNPublic {
					t.Fatalf("%s saw %v, want a datagram from %s", to, from, CGNPublic)
				}
				seen = append(seen, from)
			}
			same := seen[0].Port() == seen[1].Port()
			t.Logf("cgn %s: lan port 40000 mapped to %d and %d", mode, seen[0].Port(), seen[1].Port())
			if mode == CGNPreserve && (!same || seen[0].Port() != 40000) {
				t.Errorf("preserve mode mapped port 40000 to %d and %d, want 40000 for both", seen[0].Port(), seen[1].Port())
			}
			if mode == CGNRandom && same {
				t.Errorf("random mode reused port %d for two destinations", seen[0].Port())
			}

			// Filtering: the stranger first, so that an answer from a
			// can't be mistaken for it.
			if _, err := stranger.WriteToUDPAddrPort([]byte("let me in"), seen[0]); err != nil {
				t.Fatal(err)
			}
			if from := recvFrom(t, host, 300*time.Millisecond); from.IsValid() {
				t.Errorf("an unsolicited datagram from %v came through the mapping", from)
			}
			if _, err := a.WriteToUDPAddrPort([]byte("answer"), seen[0]); err != nil {
				t.Fatal(err)
			}
			if from := recvFrom(t, host, 2*time.Second); from != netip.MustParseAddrPort(a.LocalAddr().String()) {
				t.Errorf("the contacted server's answer: from %v, want from %s", from, a.LocalAddr())
			}
		})
	}
}

// TestCGNUDPTimeoutExpires proves the short UDP timeout takes effect, not
// just its sysctl: in random mode a mapping kept busy keeps its public
// port, and one left idle past the timeout comes back with a new one.
func TestCGNUDPTimeoutExpires(t *testing.T) {
	const timeout = 2 * time.Second
	l := newForTest(t, Options{CGNMode: CGNRandom, CGNUDPTimeout: timeout})
	host := udpAt(t, l.NS(LAN), netip.AddrPortFrom(LANAddr, 40000))
	srv := udpAt(t, l.NS(Srv4), netip.AddrPortFrom(Srv4Addr, 7001))
	to := netip.MustParseAddrPort(srv.LocalAddr().String())
	send := func() netip.AddrPort {
		t.Helper()
		if _, err := host.WriteToUDPAddrPort([]byte("ping"), to); err != nil {
			t.Fatal(err)
		}
		from := recvFrom(t, srv, 2*time.Second)
		if !from.IsValid() {
			t.Fatal("datagram lost")
		}
		return from
	}
	first := send()
	// Busy: one datagram every half timeout for 1.5 timeouts.
	for range 3 {
		time.Sleep(timeout / 2)
		if got := send(); got != first {
			t.Fatalf("busy mapping moved from %v to %v", first, got)
		}
	}
	time.Sleep(timeout + timeout/2)
	if got := send(); got.Port() == first.Port() {
		t.Errorf("mapping idle for 1.5 timeouts kept port %d", got.Port())
	}
}
