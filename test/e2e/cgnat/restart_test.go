package cgnat

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestSubscriberFlowsOutliveRelayRestart: a subscriber's TCP connection
// and UDP flow to srv4 keep going while the relay agent is down (SIGTERM,
// then SIGKILL: the pinned relay_sub link and maps forward without it)
// and after it is back, on the same public address:port; the new agent
// takes its book of blocks back from the pins, so a new flow after the
// restart takes a port of the block already granted and the block log
// still holds the one grant.
func TestSubscriberFlowsOutliveRelayRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "SIGTERM", true: "SIGKILL"}[crash], func(t *testing.T) { testRestart(t, crash) })
	}
}

func testRestart(t *testing.T, crash bool) {
	testRestartFrom(t, crash, lab.Sub, netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort))
}

// testRestartFrom is the test from the subscriber in namespace from, to
// srv4's echo server at to (NAT64: its address in the prefix).
func testRestartFrom(t *testing.T, crash bool, from lab.Role, to netip.AddrPort) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := l.NS(from).Dial(ctx, "tcp", to.String()) // the SYN after the grant
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	r := bufio.NewReader(tc)
	line := func(what string) {
		t.Helper()
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		tok := fmt.Sprintf("%s-%d\n", what, time.Now().UnixNano())
		if _, err := io.WriteString(tc, tok); err != nil {
			t.Fatalf("tcp %s: %v", what, err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != tok {
			t.Fatalf("tcp %s: echo %q, %v", what, got, err)
		}
	}
	uc, err := l.NS(from).Dial(ctx, "udp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	line("before")
	if err := e2e.EchoUDP(uc, "udp-before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	pub := func(token string) netip.AddrPort {
		t.Helper()
		p, ok := srv.PeerOf(token)
		if !ok {
			t.Fatalf("srv4 never saw %q", token)
		}
		return p.Remote
	}
	udpPub := pub("udp-before")

	if crash {
		if err := u.Relay.Cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for exited, _ := u.Relay.Exited(); !exited; exited, _ = u.Relay.Exited() {
			if time.Now().After(deadline) {
				t.Fatal("the relay did not exit within 10 s of SIGKILL")
			}
			time.Sleep(10 * time.Millisecond)
		}
	} else if err := u.Relay.Stop(); err != nil && !strings.Contains(err.Error(), "signal: terminated") {
		t.Fatalf("relay stop: %v", err)
	}
	line("agent-down")
	if err := e2e.EchoUDP(uc, "udp-agent-down", 2*time.Second); err != nil {
		t.Errorf("UDP while the relay agent was down: %v", err)
	}
	u.Relay = u.D.StartRelay(t, l)
	if _, err := u.Relay.WaitFor(ctx, "relay listening"); err != nil {
		t.Fatal(err)
	}
	line("after")
	if err := e2e.EchoUDP(uc, "udp-after", 2*time.Second); err != nil {
		t.Fatalf("UDP after the restart: %v", err)
	}
	if got := pub("udp-after"); got != udpPub {
		t.Errorf("the UDP flow left from %v after the restart, %v before", got, udpPub)
	}
	// A new flow after the restart: a port of the same block, no grant.
	nc, err := l.NS(from).Dial(ctx, "udp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := e2e.EchoUDP(nc.(*net.UDPConn), "udp-new", 2*time.Second); err != nil {
		t.Fatalf("a new UDP flow after the restart: %v", err)
	}
	b, err := os.ReadFile(u.D.CGNATLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"event":"grant"`); n != 1 {
		t.Errorf("block log after the restart holds %d grants, want the one:\n%s", n, b)
	}
	if a := pub("udp-new"); a.Addr() != udpPub.Addr() || a.Port()/512 != udpPub.Port()/512 {
		t.Errorf("the new flow left from %v, outside the block of %v", a, udpPub)
	}
}
