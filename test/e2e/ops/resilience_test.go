package ops

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
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

// TestRelayRestartKeepsFlows restarts the relay agent (SIGTERM, 3 s
// down, start again) under a TCP connection that streams data all along,
// a UDP flow that echoes all along and a UDP flow of the site's public
// IPv4. The relay's pinned datapath
// forwards while no agent runs: the stream moves and every UDP echo
// comes back while the agent is down and while the edge reconnects. The
// new agent finds the flows in its pinned maps and adopts them as the
// edge replays them (their entries untouched), and every TCP byte comes
// back intact.
func TestRelayRestartKeepsFlows(t *testing.T) {
	e2e.BothCGNs(t, func(t *testing.T, mode lab.CGNMode) { testRelayRestartKeepsFlows(t, mode, false) })
}

// TestRelayRestartAfterCrashKeepsFlows is the same with the agent killed
// (SIGKILL: no Goodbye, nothing closed in order); the edge finds its
// session gone by its Pings.
func TestRelayRestartAfterCrashKeepsFlows(t *testing.T) {
	e2e.BothCGNs(t, func(t *testing.T, mode lab.CGNMode) { testRelayRestartKeepsFlows(t, mode, true) })
}

func testRelayRestartKeepsFlows(t *testing.T, mode lab.CGNMode, crash bool) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := carryFlows(ctx, t, l)
	srv, srv4, uc, u4, s := f.srv, f.srv4, f.uc, f.u4, f.s

	// From here to the end of the replay every UDP echo must come back
	// (the echo server is one hop past the relay: a packet the relay
	// loses is an echo missing), and the stream's longest stall is
	// measured (a figure, not asserted).
	udp := make(chan error, 1)
	stopUDP := make(chan struct{})
	var echoes int
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stopUDP:
				udp <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
			if err := e2e.EchoUDP(uc, fmt.Sprintf("udp-%d", i), 2*time.Second); err != nil {
				udp <- fmt.Errorf("echo %d: %w", i, err)
				return
			}
			echoes = i + 1
		}
	}()
	stall := watchStall(s)

	if crash {
		if err := u.Relay.Cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		// SIGKILL cannot be caught: a relay still running after 5 s is a
		// kernel or harness fault, not something to wait out.
		deadline := time.Now().Add(5 * time.Second)
		for exited, _ := u.Relay.Exited(); !exited; exited, _ = u.Relay.Exited() {
			if time.Now().After(deadline) {
				t.Fatal("the relay had not exited 5 s after SIGKILL")
			}
			time.Sleep(10 * time.Millisecond)
		}
	} else if err := u.Relay.Stop(); err != nil && !e2e.IsSIGTERM(err) {
		t.Fatalf("relay stop: %v", err)
	}
	downAt := s.received.Load()
	e2e.Section(t, d.EdgeS, "session", "the edge to lose its session", func(e e2e.EdgeSession) bool { return !e.Connected })
	time.Sleep(3 * time.Second)
	if s.received.Load() <= downAt {
		t.Errorf("the TCP stream stalled while the relay agent was down (%d bytes)", downAt)
	}
	if err := e2e.EchoUDP(u4, "udp4-agent-down", 2*time.Second); err != nil {
		t.Errorf("UDP over the site's IPv4 while the relay agent was down: %v", err)
	}
	d.StartRelay(t, l)
	e2e.Section(t, d.EdgeS, "session", "a new session", func(e e2e.EdgeSession) bool { return e.Connected && e.Session != u.Session.Session })
	// The flows came back from the pinned maps: adopted, not mapped anew.
	rc := e2e.Section(t, d.RelaySock, "carriers", "the relay's adopted flows", func(c e2e.RelaySlowpath) bool { return c.Slowpath["replayed-pinned"] >= 3 })
	mark := s.received.Load()
	waitBytes(t, s, mark+16<<10, 5*time.Second, "after the restart")
	close(stopUDP)
	if err := <-udp; err != nil {
		t.Errorf("UDP across the relay restart: %v", err)
	}
	longest := stall()
	for _, name := range []string{"pinned-replaced", "pinned-unusable", "pinned-unowned", "map-failed"} {
		if n := rc.Slowpath[name]; n != 0 {
			t.Errorf("relay counted %s = %d", name, n)
		}
	}
	if err := e2e.EchoUDP(uc, "udp-after", 2*time.Second); err != nil {
		t.Fatalf("UDP after the restart: %v", err)
	}
	before, _ := srv.PeerOf("udp-before")
	after, _ := srv.PeerOf("udp-after")
	if before.Remote != after.Remote {
		t.Errorf("srv6 saw the UDP flow from %v, then from %v: not the same flow", before.Remote, after.Remote)
	}
	if err := e2e.EchoUDP(u4, "udp4-after", 2*time.Second); err != nil {
		t.Fatalf("UDP over the site's IPv4 after the restart: %v", err)
	}
	before4, _ := srv4.PeerOf("udp4-before")
	after4, _ := srv4.PeerOf("udp4-after")
	if before4.Remote != after4.Remote || before4.Remote.Addr() != lab.SitePublic4 {
		t.Errorf("srv4 saw the site's IPv4 flow from %v, then from %v: not the same public endpoint", before4.Remote, after4.Remote)
	}
	n, err := s.stop()
	if err != nil {
		t.Fatalf("TCP stream: %v", err)
	}
	t.Logf("relay: %d pinned, %d adopted; %d UDP echoes all back; TCP: %d bytes intact, longest stall %v",
		rc.Slowpath["pinned"], rc.Slowpath["replayed-pinned"], echoes, n, longest)
}

// watchStall samples a stream's progress until the returned function is
// called, which returns the longest time it made none.
func watchStall(s *lineStream) func() time.Duration {
	done := make(chan time.Duration)
	quit := make(chan struct{})
	go func() {
		var longest time.Duration
		last, since := s.received.Load(), time.Now()
		for {
			select {
			case <-quit:
				done <- max(longest, time.Since(since))
				return
			case <-time.After(20 * time.Millisecond):
			}
			if n := s.received.Load(); n != last {
				longest = max(longest, time.Since(since))
				last, since = n, time.Now()
			}
		}
	}()
	return func() time.Duration { close(quit); return <-done }
}

// TestControlOutageKeepsForwarding cuts the control channel for 30 s in
// the Internet's router, under an established TCP connection: the
// connection carries data all along (the datapath needs no agent), and
// the edge is back on a session once the outage ends.
func TestControlOutageKeepsForwarding(t *testing.T) {
	e2e.BothCGNs(t, testControlOutageKeepsForwarding)
}

func testControlOutageKeepsForwarding(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	e2e.EchoServer(t, l.NS(lab.Srv6))
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
	e2e.Section(t, d.EdgeS, "session", "the edge to lose its session", func(e e2e.EdgeSession) bool { return !e.Connected })
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
	if _, err := lab.WaitSection(ctx2, d.EdgeS, "session", func(e e2e.EdgeSession) bool { return e.Connected && e.Session != u.Session.Session }); err != nil {
		t.Fatalf("no session after the outage: %v", err)
	}
	if err := exchange(c, r, "after", 3*time.Second); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}
