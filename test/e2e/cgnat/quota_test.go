package cgnat

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestSubscriberQuota: a subscriber opening more UDP flows than its
// quota (the lab's two 512-port blocks) gets exactly its quota's
// mappings; each later flow's packet is answered at once with ICMP
// administratively prohibited, which the subscriber's connected socket
// reports as EHOSTUNREACH; another subscriber of the same relay still
// gets a block and reaches srv4; the relay counts the subscriber spent
// and the refusals.
func TestSubscriberQuota(t *testing.T) {
	const quota = 2 * 512 // blocks_per_subscriber x block ports (lab.Deploy)
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort))
	sub := l.NS(lab.Sub)
	other := netip.MustParseAddr("100.64.100.3")
	if err := sub.AddAddr(string(lab.Relay), netip.PrefixFrom(other, lab.SubNet.Bits())); err != nil {
		t.Fatal(err)
	}
	// flow sends one datagram from a new socket of from until it is
	// echoed (true) or refused (false), at most 10 tries 300 ms apart.
	flow := func(from netip.Addr) (bool, error) {
		var c *net.UDPConn
		if err := sub.Do(func() (err error) {
			c, err = net.DialUDP("udp4", &net.UDPAddr{IP: from.AsSlice()}, to)
			return err
		}); err != nil {
			return false, err
		}
		t.Cleanup(func() { c.Close() }) // the mapping lives on anyway
		msg, buf := []byte("quota\n"), make([]byte, 64)
		for range 10 {
			if _, err := c.Write(msg); err != nil {
				if errors.Is(err, syscall.EHOSTUNREACH) {
					return false, nil // the refusal of an earlier try
				}
				return false, err
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err := c.Read(buf)
			if err == nil {
				return true, nil
			}
			if errors.Is(err, syscall.EHOSTUNREACH) {
				return false, nil
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return false, err
			}
		}
		return false, errors.New("neither echoed nor refused in 10 tries")
	}
	echoed, refused := 0, 0
	start := time.Now()
	for i := range quota + 100 {
		ok, err := flow(lab.SubAddr)
		if err != nil {
			t.Fatalf("flow %d: %v (%d echoed, %d refused before)", i, err, echoed, refused)
		}
		if ok {
			if refused > 0 {
				t.Fatalf("flow %d echoed after %d refusals", i, refused)
			}
			echoed++
		} else {
			refused++
		}
	}
	t.Logf("%d flows echoed, %d refused, in %v", echoed, refused, time.Since(start).Round(time.Millisecond))
	if echoed != quota || refused != 100 {
		t.Errorf("%d flows echoed and %d refused, want the quota %d and 100", echoed, refused, quota)
	}
	ports := map[netip.AddrPort]bool{}
	for _, p := range srv.Peers() {
		if p.Network == "udp" && p.Remote.Addr() == lab.SubPool4.Addr() {
			ports[p.Remote] = true
		}
	}
	if len(ports) != quota {
		t.Errorf("srv4 saw %d public address:ports, want %d", len(ports), quota)
	}
	if ok, err := flow(other); err != nil || !ok {
		t.Errorf("another subscriber after the first was spent: echoed %v, %v", ok, err)
	}
	e2e.Section(t, u.D.RelaySock, "cgnat", "the relay's cgnat counts", func(m map[string]uint64) bool {
		return m["spent"] == 1 && m["spent_now"] == 1 && m["grants"] == 3 && m["subscribers"] == 2
	})
	e2e.Section(t, u.D.RelaySock, "datapath", "the refusals counted", func(m map[string]uint64) bool {
		return m["cgnat-refused"] >= 100
	})
}
