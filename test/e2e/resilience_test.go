package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
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
	bothCGNs(t, func(t *testing.T, mode lab.CGNMode) { testRelayRestartKeepsFlows(t, mode, false) })
}

// TestRelayRestartAfterCrashKeepsFlows is the same with the agent killed
// (SIGKILL: no Goodbye, nothing closed in order); the edge finds its
// session gone by its Pings.
func TestRelayRestartAfterCrashKeepsFlows(t *testing.T) {
	bothCGNs(t, func(t *testing.T, mode lab.CGNMode) { testRelayRestartKeepsFlows(t, mode, true) })
}

func testRelayRestartKeepsFlows(t *testing.T, mode lab.CGNMode, crash bool) {
	u := up(t, mode)
	l, d := u.lab, u.d
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
			if err := echoUDP(uc, fmt.Sprintf("udp-%d", i), 2*time.Second); err != nil {
				udp <- fmt.Errorf("echo %d: %w", i, err)
				return
			}
			echoes = i + 1
		}
	}()
	stall := watchStall(s)

	if crash {
		if err := u.relay.Cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		for exited, _ := u.relay.Exited(); !exited; exited, _ = u.relay.Exited() {
			time.Sleep(10 * time.Millisecond)
		}
	} else if err := u.relay.Stop(); err != nil && !isSIGTERM(err) {
		t.Fatalf("relay stop: %v", err)
	}
	downAt := s.received.Load()
	section(t, d.edgeS, "session", "the edge to lose its session", func(e edgeSession) bool { return !e.Connected })
	time.Sleep(3 * time.Second)
	if s.received.Load() <= downAt {
		t.Errorf("the TCP stream stalled while the relay agent was down (%d bytes)", downAt)
	}
	if err := echoUDP(u4, "udp4-agent-down", 2*time.Second); err != nil {
		t.Errorf("UDP over the site's IPv4 while the relay agent was down: %v", err)
	}
	d.startRelay(t, l)
	section(t, d.edgeS, "session", "a new session", func(e edgeSession) bool { return e.Connected && e.Session != u.session.Session })
	// The flows came back from the pinned maps: adopted, not mapped anew.
	rc := section(t, d.relaySock, "carriers", "the relay's adopted flows", func(c relaySlowpath) bool { return c.Slowpath["replayed-pinned"] >= 3 })
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
	if err := echoUDP(uc, "udp-after", 2*time.Second); err != nil {
		t.Fatalf("UDP after the restart: %v", err)
	}
	before, _ := srv.PeerOf("udp-before")
	after, _ := srv.PeerOf("udp-after")
	if before.Remote != after.Remote {
		t.Errorf("srv6 saw the UDP flow from %v, then from %v: not the same flow", before.Remote, after.Remote)
	}
	if err := echoUDP(u4, "udp4-after", 2*time.Second); err != nil {
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
