package cgnat

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestSubscriberReachesSrv4: the sub host's TCP, UDP and ping reach srv4
// through the relay's CGNAT; srv4 sees them from the pool's first
// address (the subscriber's one block is there: paired pooling), on a
// block port; the relay's block log holds the grant, fsync'd, with the
// subscriber, address and port range; and `unmap relay lookup` names
// the subscriber for the port srv4 saw; after the log is moved away and
// the relay gets SIGHUP, the next grant is in a new file at the path.
func TestSubscriberReachesSrv4(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort)
	pool := lab.SubPool4.Addr()
	first, last := e2e.PortRange(t, lab.SubPorts)
	sub := l.NS(lab.Sub)
	var seen []netip.AddrPort
	for _, network := range []string{"udp", "tcp"} {
		// The first packet finds no block: the relay grants one and
		// sends the packet through its datapath again (first_test.go).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		token := "cgnat-" + network
		var err error
		if network == "tcp" {
			_, err = sub.EchoTCP(ctx, to, token)
		} else {
			_, err = sub.EchoUDP(ctx, to, token)
		}
		cancel()
		if err != nil {
			t.Fatalf("%s from sub: %v", network, err)
		}
		p, ok := srv.PeerOf(token)
		if !ok {
			t.Fatalf("%s: srv4 never saw the exchange", network)
		}
		if a := p.Remote; a.Addr() != pool || a.Port() < first || a.Port() > last {
			t.Errorf("%s: srv4 saw %v, want %v on a block port %d-%d", network, a, pool, first, last)
		}
		seen = append(seen, p.Remote)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub.Ping(ctx, lab.Srv4Addr); err != nil {
		t.Errorf("ping from sub: %v", err)
	}

	b, err := os.ReadFile(u.D.CGNATLog)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var rec struct {
		Event      string     `json:"event"`
		Subscriber netip.Addr `json:"subscriber"`
		Address    netip.Addr `json:"address"`
		PortFirst  uint16     `json:"port_first"`
		PortLast   uint16     `json:"port_last"`
	}
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil {
		t.Fatalf("block log: want the one grant, got:\n%s", b)
	}
	if rec.Event != "grant" || rec.Subscriber != lab.SubAddr || rec.Address != pool || rec.PortLast-rec.PortFirst != 511 {
		t.Errorf("block log record %+v", rec)
	}
	for _, p := range seen {
		if p.Port() < rec.PortFirst || p.Port() > rec.PortLast {
			t.Errorf("srv4 saw %v, outside the logged block %d-%d", p, rec.PortFirst, rec.PortLast)
		}
	}
	e2e.Section(t, u.D.RelaySock, "cgnat", "the relay's cgnat counts", func(m map[string]uint64) bool {
		return m["grants"] == 1 && m["subscribers"] == 1 && m["errors"] == 0
	})
	out, err := l.NS(lab.Relay).Output(ctx, u.D.Bin, "relay", "lookup", "-c", u.D.RelayConfig, seen[0].String())
	if err != nil || !strings.Contains(string(out), lab.SubAddr.String()) {
		t.Errorf("unmap relay lookup %v: %v\n%s", seen[0], err, out)
	}

	// Log rotation: the file moved away, SIGHUP, and the next grant (a
	// second subscriber's) is in a new file at the configured path.
	if err := os.Rename(u.D.CGNATLog, u.D.CGNATLog+".1"); err != nil {
		t.Fatal(err)
	}
	if err := u.Relay.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, err := os.Stat(u.D.CGNATLog); err != nil; _, err = os.Stat(u.D.CGNATLog) {
		if time.Now().After(deadline) {
			t.Fatalf("no new block log within 5 s of SIGHUP: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	second := netip.MustParseAddr("100.64.100.3")
	if err := sub.AddAddr(string(lab.Relay), netip.PrefixFrom(second, lab.SubNet.Bits())); err != nil {
		t.Fatal(err)
	}
	var c *net.UDPConn
	if err := sub.Do(func() (err error) {
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: second.AsSlice()}, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Its first datagram waits for the grant, then goes on (first_test.go).
	if err := e2e.Retry(5*time.Second, func() error { return e2e.EchoUDP(c, "cgnat-second", time.Second) }); err != nil {
		t.Fatalf("the second subscriber: %v", err)
	}
	rotated, _ := os.ReadFile(u.D.CGNATLog + ".1")
	fresh, _ := os.ReadFile(u.D.CGNATLog)
	if !bytes.Equal(rotated, b) || !strings.Contains(string(fresh), `"subscriber":"100.64.100.3"`) || strings.Count(string(fresh), "\n") != 1 {
		t.Errorf("after rotation: old file\n%s\nnew file\n%s", rotated, fresh)
	}
}
