package forward

import (
	"context"
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
// get through at the first try, each having been passed to the stack.
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
	before := map[string]uint64{}
	for _, sock := range []string{u.D.EdgeS, u.D.RelaySock} {
		before[sock] = datapathCount(t, sock, "pass-no-neigh")
	}
	for _, f := range []struct {
		role lab.Role
		dev  lab.Role
	}{{lab.Edge, lab.CGN}, {lab.Relay, lab.Inet}} {
		if out, err := l.NS(f.role).Output(ctx, "ip", "-4", "neigh", "flush", "dev", string(f.dev)); err != nil {
			t.Fatalf("%s: ip neigh flush: %v %s", f.role, err, out)
		}
	}
	if err := exchange("neigh-again", time.Second); err != nil {
		t.Errorf("a datagram of the flow sent while neither agent had a neighbour entry: %v", err)
	}
	n := 0
	for _, p := range srv.Peers() {
		if p.Token == "neigh-again" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("srv6 got %q %d times, want once", "neigh-again", n)
	}
	for _, sock := range []string{u.D.EdgeS, u.D.RelaySock} {
		if after := datapathCount(t, sock, "pass-no-neigh"); after == before[sock] {
			t.Errorf("%s: pass-no-neigh stayed %d: the test did not make the program pass a carrier", sock, after)
		}
	}
}

func datapathCount(t *testing.T, sock, reason string) uint64 {
	t.Helper()
	return e2e.Section(t, sock, "datapath", "datapath counters", func(map[string]uint64) bool { return true })[reason]
}
