package ops

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestEdgeRestartKeepsFlows restarts the edge agent (SIGTERM, 3 s down,
// start again) under a TCP connection that streams data all along, an
// established UDP flow and a UDP flow of the site's public IPv4. The pinned datapath forwards while no agent runs
// (the stream moves during the outage); the new agent takes the flows
// back from the pinned maps and replays them to the relay, which keeps
// them rather than opening new ones; every TCP byte comes back intact,
// and the UDP flow works again from the same source.
func TestEdgeRestartKeepsFlows(t *testing.T) { e2e.BothCGNs(t, testEdgeRestartKeepsFlows) }

func testEdgeRestartKeepsFlows(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := carryFlows(ctx, t, l)
	srv, srv4, uc, u4, s := f.srv, f.srv4, f.uc, f.u4, f.s
	// The stream's rate with the agent up is the baseline for its rate
	// with the agent down (a figure, not asserted).
	base0, baseT := s.received.Load(), time.Now()
	time.Sleep(2 * time.Second)
	baseRate := float64(s.received.Load()-base0) / time.Since(baseT).Seconds()

	opened := e2e.Section(t, d.RelaySock, "carriers", "the relay's counters", func(e2e.RelaySlowpath) bool { return true }).Slowpath["opened"]
	if err := u.Edge.Stop(); err != nil && !e2e.IsSIGTERM(err) {
		t.Fatalf("edge stop: %v", err)
	}
	downAt, downT := s.received.Load(), time.Now()
	time.Sleep(3 * time.Second)
	// The datapath needs no agent for established flows.
	if s.received.Load() <= downAt {
		t.Errorf("the TCP stream stalled while the edge agent was down (%d bytes)", downAt)
	}
	downRate := float64(s.received.Load()-downAt) / time.Since(downT).Seconds()
	t.Logf("TCP stream: %.0f B/s with the agent down, %.2f× its rate with the agent up (%.0f B/s)", downRate, downRate/baseRate, baseRate)
	if err := e2e.EchoUDP(uc, "udp-agent-down", 2*time.Second); err != nil {
		t.Errorf("UDP while the edge agent was down: %v", err)
	}
	u.Edge = d.StartEdge(t, l)
	e2e.Section(t, d.EdgeS, "session", "the restarted edge's session", func(e e2e.EdgeSession) bool { return e.Connected })

	// Both flows came back from the pinned maps and went to the relay as
	// a replay, not as new flows.
	es := e2e.Section(t, d.EdgeS, "slowpath", "the edge's restored flows", func(c e2e.Slowpath) bool { return c["restored"] >= 3 })
	rc := e2e.Section(t, d.RelaySock, "carriers", "the relay's replays", func(c e2e.RelaySlowpath) bool { return c.Slowpath["replayed"] >= 3 })
	t.Logf("edge restored %d flows; relay: %d replayed, %d opened before, %d after", es["restored"], rc.Slowpath["replayed"], opened, rc.Slowpath["opened"])

	if err := e2e.Retry(3*time.Second, func() error { return e2e.EchoUDP(uc, "udp-after", time.Second) }); err != nil {
		t.Fatalf("UDP after the restart: %v", err)
	}
	before, _ := srv.PeerOf("udp-before")
	after, _ := srv.PeerOf("udp-after")
	if before.Remote != after.Remote {
		t.Errorf("srv6 saw the UDP flow from %v, then from %v: not the same flow", before.Remote, after.Remote)
	}
	if err := e2e.Retry(3*time.Second, func() error { return e2e.EchoUDP(u4, "udp4-after", time.Second) }); err != nil {
		t.Fatalf("UDP over the site's IPv4 after the restart: %v", err)
	}
	before4, _ := srv4.PeerOf("udp4-before")
	after4, _ := srv4.PeerOf("udp4-after")
	if before4.Remote != after4.Remote || before4.Remote.Addr() != lab.SitePublic4 {
		t.Errorf("srv4 saw the site's IPv4 flow from %v, then from %v: not the same public endpoint", before4.Remote, after4.Remote)
	}
	mark := s.received.Load()
	waitBytes(t, s, mark+16<<10, 5*time.Second, "after the restart")
	n, err := s.stop()
	if err != nil {
		t.Fatalf("TCP stream: %v", err)
	}
	if got := e2e.Section(t, d.RelaySock, "carriers", "the relay's counters", func(e2e.RelaySlowpath) bool { return true }).Slowpath["opened"]; got != opened {
		t.Errorf("the relay opened %d flows during the restart; the edge's flows must be replayed", got-opened)
	}
	t.Logf("TCP: %d bytes echoed intact across the restart", n)
}

// lineStream writes random lines on a TCP connection to an echo server and
// checks that each comes back, in order, byte for byte. It stays below
// the echo server's 1 MiB per connection.
type lineStream struct {
	received atomic.Int64 // bytes echoed and verified
	quit     chan struct{}
	once     sync.Once
	finished chan struct{} // closed when the reader is done; err is set
	err      error
}

const streamMax = 900 << 10

// carried are the flows a restart test carries across an agent restart,
// each seen working first: UDP to srv6 (uc), UDP over the site's public
// IPv4, NAPT at both ends, to srv4 (u4), and a TCP stream to srv6 (s).
// The connections close and the stream stops when the test ends.
type carried struct {
	srv, srv4 *lab.EchoServer
	uc, u4    net.Conn
	s         *lineStream
}

func carryFlows(ctx context.Context, t *testing.T, l *lab.Lab) *carried {
	t.Helper()
	f := &carried{srv: e2e.EchoServer(t, l.NS(lab.Srv6)), srv4: e2e.EchoServer(t, l.NS(lab.Srv4))}
	echoAt := netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String()
	dial := func(network, at string) net.Conn {
		t.Helper()
		c, err := l.NS(lab.LAN).Dial(ctx, network, at)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	f.uc = dial("udp", echoAt)
	if err := e2e.Retry(3*time.Second, func() error { return e2e.EchoUDP(f.uc, "udp-before", time.Second) }); err != nil {
		t.Fatalf("UDP before the restart: %v", err)
	}
	f.u4 = dial("udp4", netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort).String())
	if err := e2e.Retry(3*time.Second, func() error { return e2e.EchoUDP(f.u4, "udp4-before", time.Second) }); err != nil {
		t.Fatalf("UDP over the site's IPv4 before the restart: %v", err)
	}
	f.s = startStream(dial("tcp", echoAt))
	t.Cleanup(func() { f.s.stop() })
	waitBytes(t, f.s, 16<<10, 5*time.Second, "before the restart")
	return f
}

func startStream(c net.Conn) *lineStream {
	s := &lineStream{quit: make(chan struct{}), finished: make(chan struct{})}
	sent := make(chan string, 1<<14)
	go func() { // writer: about 28 KB/s
		defer close(sent)
		buf := make([]byte, 64)
		for i, total := 0, 0; total < streamMax; i++ {
			select {
			case <-s.quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_, _ = rand.Read(buf)
			line := fmt.Sprintf("%08d-%s\n", i, hex.EncodeToString(buf))
			_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
			total += len(line)
			sent <- line
		}
	}()
	go func() { // reader
		defer close(s.finished)
		r := bufio.NewReader(c)
		for want := range sent {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := r.ReadString('\n')
			if err != nil {
				s.err = fmt.Errorf("after %d bytes: %w", s.received.Load(), err)
				return
			}
			if got != want {
				s.err = fmt.Errorf("after %d bytes: echo differs from what was sent", s.received.Load())
				return
			}
			s.received.Add(int64(len(got)))
		}
	}()
	return s
}

// stop ends the writer, waits for the last echoes and returns the bytes
// verified. It may be called again.
func (s *lineStream) stop() (int64, error) {
	s.once.Do(func() { close(s.quit) })
	<-s.finished
	return s.received.Load(), s.err
}

// waitBytes waits until the stream has verified n bytes.
func waitBytes(t *testing.T, s *lineStream, n int64, d time.Duration, when string) {
	t.Helper()
	for end := time.Now().Add(d); s.received.Load() < n; {
		select {
		case <-s.finished:
			t.Fatalf("TCP stream %s: ended after %d bytes: %v", when, s.received.Load(), s.err)
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("TCP stream %s: %d bytes in %v, want %d", when, s.received.Load(), d, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
