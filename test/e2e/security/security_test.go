package security

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestHijackRefused has a second customer behind the same CGN address
// spray every relay carrier port while the site's flows open: the relay
// binds each carrier only to the packet that carries the edge's token, so
// the flows work, the attempts are counted, and the rogue gets nothing.
func TestHijackRefused(t *testing.T) { e2e.BothCGNs(t, testHijackRefused) }

func testHijackRefused(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	host := u.Host
	lanSrv := e2e.EchoServer(t, l.NS(lab.LAN))
	e2e.EchoServer(t, l.NS(lab.Srv6))

	rogue, err := l.NS(lab.Rogue).ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	first, last := e2e.PortRange(t, e2e.CarrierPorts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	spray, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var got int
	wg.Go(func() {
		buf := make([]byte, 2048)
		for spray.Err() == nil {
			for p := first; p <= last; p++ {
				to := netip.AddrPortFrom(lab.RelayAddr, p)
				_, _ = rogue.WriteTo([]byte("let me in"), e2e.UDPAddr(to))
			}
			_ = rogue.SetReadDeadline(time.Now().Add(time.Millisecond))
			if n, _, err := rogue.ReadFrom(buf); err == nil && n > 0 {
				got++
			}
		}
	})

	if _, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(host, lab.EchoPort), "inbound-under-attack"); err != nil {
		t.Errorf("inbound UDP under attack: %v", err)
	}
	if _, err := l.NS(lab.LAN).EchoUDP(ctx, netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort), "outbound-under-attack"); err != nil {
		t.Errorf("outbound UDP under attack: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // more spraying at the bound carriers
	stop()
	wg.Wait()
	if p, ok := lanSrv.PeerOf("inbound-under-attack"); !ok || p.Remote.Addr() != lab.Srv6Addr {
		t.Errorf("the LAN host saw %+v (found %v)", p, ok)
	}
	if got != 0 {
		t.Errorf("the rogue received %d datagrams", got)
	}
	c := e2e.Section(t, d.RelaySock, "carriers", "the relay's counters", func(e2e.RelaySlowpath) bool { return true })
	refused := c.Slowpath["bind-bad-token"] + c.Slowpath["bind-already-bound"]
	if refused == 0 {
		t.Errorf("no hijack attempt counted: %v", c.Slowpath)
	}
	if c.Slowpath["rebound"] != 0 {
		t.Errorf("the rogue got a carrier re-bound: %v", c.Slowpath)
	}
	t.Logf("relay refused %d attempts to bind carriers (%v)", refused, c.Slowpath)
}

// TestForeignSourceDropped has a LAN host send from an address outside
// the site's prefix: the edge opens no flow for it, counts it, and nothing
// reaches the Internet server.
func TestForeignSourceDropped(t *testing.T) { e2e.BothCGNs(t, testForeignSourceDropped) }

func testForeignSourceDropped(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	foreign := netip.MustParsePrefix("2001:db8:7::2/64")
	if err := l.NS(lab.LAN).AddAddr(string(lab.Edge), foreign); err != nil {
		t.Fatal(err)
	}
	srv6 := e2e.EchoServer(t, l.NS(lab.Srv6))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pc, err := l.NS(lab.LAN).ListenPacket("udp6", netip.AddrPortFrom(foreign.Addr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for i := range 5 {
		_, _ = pc.WriteTo(fmt.Appendf(nil, "spoofed-%d\n", i), e2e.UDPAddr(netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort)))
	}
	<-ctx.Done()
	for _, p := range srv6.Peers() {
		if p.Remote.Addr() == foreign.Addr() {
			t.Errorf("srv6 received %+v from the foreign source", p)
		}
	}
	type slow map[string]uint64
	s := e2e.Section(t, d.EdgeS, "slowpath", "the edge's refusal", func(s slow) bool { return s["miss-not-site"] > 0 })
	t.Logf("edge: %d packets from outside the prefix refused", s["miss-not-site"])
}
