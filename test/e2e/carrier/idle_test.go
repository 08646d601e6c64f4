package carrier

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestIdleUDPFlowSurvives leaves a UDP flow idle for 65 s, more than
// twice the CGN's 30 s UDP timeout: the edge's keepalives hold the CGN's
// mapping, so the flow works again at once, from the same source.
func TestIdleUDPFlowSurvives(t *testing.T) { e2e.BothCGNs(t, testIdleUDPFlowSurvives) }

func testIdleUDPFlowSurvives(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	srv := e2e.EchoServer(t, l.NS(lab.Srv6))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := l.NS(lab.LAN).Dial(ctx, "udp", netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(token string) error {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte(token + "\n")); err != nil {
			return err
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != token+"\n" {
			return fmt.Errorf("echo %q", buf[:n])
		}
		return nil
	}
	if err := echo("before-idle"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(65 * time.Second)
	if err := echo("after-idle"); err != nil {
		t.Fatalf("after 65 s idle: %v", err)
	}
	before, _ := srv.PeerOf("before-idle")
	after, _ := srv.PeerOf("after-idle")
	if before.Remote != after.Remote {
		t.Errorf("srv6 saw the flow from %v, then from %v", before.Remote, after.Remote)
	}
	type counts map[string]uint64
	dp := e2e.Section(t, d.RelaySock, "datapath", "the relay's counters", func(counts) bool { return true })
	if dp["keepalive"] < 2 {
		t.Errorf("the relay consumed %d keepalives, want at least 2 in 65 s", dp["keepalive"])
	}
}
