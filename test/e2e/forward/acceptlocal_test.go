package forward

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// TestCarriersPassedBeforeNeighbour is why both agents set accept_local
// (edge: LAN interface; relay: its external interface). A translated
// carrier leaves XDP with the agent's own IPv4 address as its source;
// when the kernel has no neighbour entry for its next hop, the program
// passes it to the stack to resolve one (`pass-no-neigh`), and the stack
// then sees a packet arrive from outside with a local source address: a
// martian, dropped, unless accept_local is set on the interface it came
// in on. The test sets up a UDP flow lan → srv6, removes the IPv4
// neighbour entries of the edge (towards the CGN) and of the relay
// (towards inet), and sends once more on the flow: the datagram out (the
// edge's LAN program) and its echo back (the relay's program) must both
// get through at the first try; it repeats (up to 5 times) until each
// program has passed a carrier to the stack at least once.
func TestCarriersPassedBeforeNeighbour(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv6))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := l.NS(lab.LAN).Dial(ctx, "udp", netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange := func(token string, wait time.Duration) error {
		if _, err := c.Write([]byte(token + "\n")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 128)
		_, err := c.Read(buf)
		return err
	}
	// The flow's first packet is held and sent by the agents; retry
	// until the flow is up.
	for i := 0; ; i++ {
		if err := exchange("neigh-open", 300*time.Millisecond); err == nil {
			break
		} else if i == 20 {
			t.Fatalf("the flow never opened: %v", err)
		}
	}
	// Anything the kernel itself sends towards the same next hop between
	// the flush and the datagram (the edge's bind proofs, the control
	// channel) resolves the neighbour again; so flush and send again
	// until each agent's program has passed a carrier at least once.
	// Every datagram must get through at its first try.
	hops := []struct {
		role lab.Role
		dev  lab.Role
		sock string
	}{{lab.Edge, lab.CGN, u.D.EdgeS}, {lab.Relay, lab.Inet, u.D.RelaySock}}
	passed := map[string]bool{}
	for try := 0; try < 5 && !(passed[u.D.EdgeS] && passed[u.D.RelaySock]); try++ {
		before := map[string]uint64{}
		for _, h := range hops {
			before[h.sock] = datapathCount(t, h.sock, "pass-no-neigh")
		}
		for _, h := range hops {
			if out, err := l.NS(h.role).Output(ctx, "ip", "-4", "neigh", "flush", "dev", string(h.dev)); err != nil {
				t.Fatalf("%s: ip neigh flush: %v %s", h.role, err, out)
			}
		}
		token := fmt.Sprintf("neigh-again-%d", try)
		if err := exchange(token, time.Second); err != nil {
			t.Fatalf("%s, sent right after both agents' neighbour entries were flushed: %v", token, err)
		}
		n := 0
		for _, p := range srv.Peers() {
			if p.Token == token {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("srv6 got %q %d times, want once", token, n)
		}
		for _, h := range hops {
			if datapathCount(t, h.sock, "pass-no-neigh") > before[h.sock] {
				passed[h.sock] = true
			}
		}
	}
	for _, h := range hops {
		if !passed[h.sock] {
			t.Errorf("%s: pass-no-neigh never moved in 5 tries: the test did not make the program pass a carrier", h.sock)
		}
	}
}

func datapathCount(t *testing.T, sock, reason string) uint64 {
	t.Helper()
	return e2e.Section(t, sock, "datapath", "datapath counters", func(map[string]uint64) bool { return true })[reason]
}
