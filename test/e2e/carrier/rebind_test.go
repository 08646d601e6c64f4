package carrier

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/vishvananda/netlink"
)

// relayRebinds is what the relay's status says of carriers it re-bound.
type relayRebinds struct {
	Slowpath map[string]uint64 `json:"slowpath"`
	Rebound  []struct {
		Flow       string `json:"flow"`
		Public     string `json:"public"`
		Generation uint16 `json:"generation"`
	} `json:"rebound"`
}

// TestCarrierRebind flushes the CGN's connection tracking under an
// established UDP flow, as a CGNAT restart would: in random mode the
// carrier's next packets leave from another public port. The relay asks
// the edge to prove the carrier (CarrierMoved), the edge sends a token
// keepalive on it, the relay re-binds the carrier to the new port
// (generation 1), and the flow works again within a few seconds. With the
// port-preserving CGN the port usually stays and nothing needs re-binding;
// the flow must work again all the same.
func TestCarrierRebind(t *testing.T) { e2e.BothCGNs(t, testCarrierRebind) }

func testCarrierRebind(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	e2e.EchoServer(t, l.NS(lab.Srv6))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uc, err := l.NS(lab.LAN).Dial(ctx, "udp", netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := e2e.EchoUDP(uc, "before-flush", 2*time.Second); err != nil {
		t.Fatalf("UDP before the flush: %v", err)
	}
	if err := l.NS(lab.CGN).Do(func() error { return netlink.ConntrackTableFlush(netlink.ConntrackTable) }); err != nil {
		t.Fatalf("flush the CGN's conntrack: %v", err)
	}
	flushed := time.Now()
	tries := 0
	if err := e2e.Retry(5*time.Second, func() error { tries++; return e2e.EchoUDP(uc, "after-flush", 100*time.Millisecond) }); err != nil {
		t.Fatalf("UDP after the CGN lost its mappings: %v", err)
	}
	t.Logf("the flow works again %v after the flush (try %d, 100 ms each)", time.Since(flushed).Round(time.Millisecond), tries)

	rc := e2e.Section(t, d.RelaySock, "carriers", "the relay's counters", func(relayRebinds) bool { return true })
	t.Logf("relay: %d re-bound, %d asked, %v", rc.Slowpath["rebound"], rc.Slowpath["moved-asked"], rc.Rebound)
	if mode == lab.CGNRandom {
		if rc.Slowpath["rebound"] == 0 || len(rc.Rebound) == 0 || rc.Rebound[0].Generation != 1 {
			t.Errorf("random mode: no re-bind at generation 1 in the relay's status: %+v", rc)
		}
		es := e2e.Section(t, d.EdgeS, "slowpath", "the edge's counters", func(c e2e.Slowpath) bool { return c["rebound"] > 0 })
		if es["rebind-proof-sent"] == 0 {
			t.Errorf("the edge sent no token keepalive: %v", es)
		}
	}
	// The flow goes on working on its new port.
	for i := range 5 {
		if err := e2e.EchoUDP(uc, "steady", 2*time.Second); err != nil {
			t.Fatalf("exchange %d after the re-bind: %v", i, err)
		}
	}
}
