package forward

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/priv"
	"github.com/vishvananda/netlink"
)

// TestTraceroute6 (proof 5): a traceroute from a LAN host to srv6 lists
// every hop: the edge, the carrier path's routers as 64:ff9b::<IPv4>
// (the CGN, inet, the relay itself), then the routers beyond the relay
// with their own addresses (inet's relay side), and srv6 last. The Go
// tracer the tour uses (lab.Trace6) runs always; the real traceroute6,
// a client the test drives on purpose, runs when installed.
func TestTraceroute6(t *testing.T) { e2e.BothCGNs(t, testTraceroute6) }

func testTraceroute6(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lan := u.Lab.NS(lab.LAN)
	tracers := []struct {
		name  string
		trace func(*testing.T) ([]netip.Addr, []byte, error)
	}{
		{"go", func(*testing.T) ([]netip.Addr, []byte, error) { return lan.Trace6(ctx, lab.Srv6Addr, 2) }},
		{"traceroute6", func(t *testing.T) ([]netip.Addr, []byte, error) {
			priv.Tool(t, "traceroute6", "traceroute")
			return lan.Traceroute6(ctx, lab.Srv6Addr, 2)
		}},
	}
	for _, tr := range tracers {
		t.Run(tr.name, func(t *testing.T) {
			hops, out, err := tr.trace(t)
			t.Logf("%s", out)
			if err != nil {
				t.Fatal(err)
			}
			if err := lab.CheckHops(hops, lab.TraceToSrv6()); err != nil {
				t.Error(err)
				a, _ := lan.Netlink().AddrList(nil, netlink.FAMILY_V6)
				r, _ := lan.Netlink().RouteList(nil, netlink.FAMILY_V6)
				t.Logf("lan (host %v): addresses %v, routes %v", u.Host, a, r)
			}
		})
	}
	counts := e2e.Section(t, u.D.RelaySock, "carriers", "the relay's relayed errors", func(c struct {
		Slowpath map[string]uint64 `json:"slowpath"`
	}) bool {
		return c.Slowpath["icmp-err-relayed"] > 0 && c.Slowpath["ttl-exceeded-sent"] > 0
	})
	t.Logf("relay slow path: %v", counts.Slowpath)
	edge := e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's injected errors", func(c map[string]uint64) bool {
		return c["icmp-err-injected"] > 0 && c["ttl-exceeded-sent"] > 0
	})
	t.Logf("edge slow path: %v", edge)
}

// TestPathMTUBeyondRelay (proof 5): srvn sits behind a 1400-byte link
// beyond the relay and advertises a 1500-byte MSS, so only inet's Packet
// Too Big, relayed to the edge over the control channel, can tell the
// LAN host. A 2 MiB TCP upload completes with its bytes intact, and the
// host's route cache holds mtu 1400. The same upload to srv6 (1500 all
// the way) in the same run is the baseline.
func TestPathMTUBeyondRelay(t *testing.T) { e2e.BothCGNs(t, testPathMTUBeyondRelay) }

func testPathMTUBeyondRelay(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const size = 2 << 20
	base, err := lab.Upload(ctx, u.Lab.NS(lab.LAN), u.Lab.NS(lab.Srv6), netipPort(lab.Srv6Addr), size)
	if err != nil {
		t.Fatalf("baseline lan → srv6: %v", err)
	}
	d, err := lab.UploadPastNarrow(ctx, u.Lab, size)
	if err != nil {
		t.Fatalf("lan → srvn: %v", err)
	}
	t.Logf("2 MiB verified: lan → srvn (PMTU 1400 learned) %v, lan → srv6 %v: ratio %.2f", d, base, d.Seconds()/base.Seconds())
	counts := e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's injected errors", func(c map[string]uint64) bool {
		return c["icmp-err-injected"] > 0
	})
	t.Logf("edge slow path: %v", counts)
}
