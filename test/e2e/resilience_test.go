package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/test/lab"
)

// exchange writes a line on c and reads the echo, within d.
func exchange(c net.Conn, r *bufio.Reader, line string, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := fmt.Fprintln(c, line); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echo %q, sent %q", got, line)
	}
	return nil
}

// TestRelayRestartKeepsFlows restarts the relay under an established TCP
// connection: the edge reconnects and replays its flows, the new relay
// maps them again, and the connection carries data again within 3 s of
// the relay coming back.
func TestRelayRestartKeepsFlows(t *testing.T) { bothCGNs(t, testRelayRestartKeepsFlows) }

func testRelayRestartKeepsFlows(t *testing.T, mode lab.CGNMode) {
	u := up(t, mode)
	l, d := u.lab, u.d
	relay := u.relay
	s := u.session
	echoServer(t, l.NS(lab.Srv6))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.NS(lab.LAN).Dial(ctx, "tcp", netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := exchange(c, r, "before", 5*time.Second); err != nil {
		t.Fatalf("before the restart: %v", err)
	}

	if err := relay.Stop(); err != nil {
		t.Logf("relay stop: %v", err)
	}
	section(t, d.edgeS, "session", "the edge to lose its session", func(e edgeSession) bool { return !e.Connected })
	d.startRelay(t, l)
	back := time.Now()
	section(t, d.edgeS, "session", "a new session", func(e edgeSession) bool { return e.Connected && e.Session != s.Session })
	// The connection's next segment may be sent before the replay has
	// mapped the flow again; TCP retransmits it.
	if err := exchange(c, r, "after", 3*time.Second); err != nil {
		t.Fatalf("the connection after the relay restart: %v", err)
	}
	t.Logf("data flows again %v after the relay came back", time.Since(back))
}

// TestControlOutageKeepsForwarding cuts the control channel for 30 s in
// the Internet's router, under an established TCP connection: the
// connection carries data all along (the datapath needs no agent), and
// the edge is back on a session once the outage ends.
func TestControlOutageKeepsForwarding(t *testing.T) { bothCGNs(t, testControlOutageKeepsForwarding) }

func testControlOutageKeepsForwarding(t *testing.T, mode lab.CGNMode) {
	u := up(t, mode)
	l, d := u.lab, u.d
	echoServer(t, l.NS(lab.Srv6))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := l.NS(lab.LAN).Dial(ctx, "tcp", netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	unblock, err := l.NS(lab.Inet).BlockUDPPort(443)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unblock() })
	section(t, d.edgeS, "session", "the edge to lose its session", func(e edgeSession) bool { return !e.Connected })
	for end, i := time.Now().Add(30*time.Second), 0; time.Now().Before(end); i++ {
		if err := exchange(c, r, fmt.Sprintf("during-%d", i), 2*time.Second); err != nil {
			t.Fatalf("during the outage, after %d exchanges: %v", i, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := unblock(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(ctx, 45*time.Second) // the edge's backoff is at most 30 s
	defer cancel2()
	if _, err := lab.WaitSection(ctx2, d.edgeS, "session", func(e edgeSession) bool { return e.Connected && e.Session != u.session.Session }); err != nil {
		t.Fatalf("no session after the outage: %v", err)
	}
	if err := exchange(c, r, "after", 3*time.Second); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// TestIdleUDPFlowSurvives leaves a UDP flow idle for 65 s, more than
// twice the CGN's 30 s UDP timeout: the edge's keepalives hold the CGN's
// mapping, so the flow works again at once, from the same source.
func TestIdleUDPFlowSurvives(t *testing.T) { bothCGNs(t, testIdleUDPFlowSurvives) }

func testIdleUDPFlowSurvives(t *testing.T, mode lab.CGNMode) {
	u := up(t, mode)
	l, d := u.lab, u.d
	srv := echoServer(t, l.NS(lab.Srv6))
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
	dp := section(t, d.relaySock, "datapath", "the relay's counters", func(counts) bool { return true })
	if dp["keepalive"] < 2 {
		t.Errorf("the relay consumed %d keepalives, want at least 2 in 65 s", dp["keepalive"])
	}
}
