package forward

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestRelayPassedPacketsDoNotLoop: packets the relay's datapath passes
// to the kernel (here fragments, which it does not translate) addressed
// to a site's prefix or public IPv4 must end at the relay, not follow its
// default route back to the upstream router (inet), which routes the
// site to the relay again: a loop until the hop limit runs out. The
// lab's own unreachable routes for the relay's pools are removed first,
// so only what the relay agent installs stands between them and a loop.
// A capture on the relay's upstream link counts the packets to the site
// that the relay sends back out: none may be.
func TestRelayPassedPacketsDoNotLoop(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	relayNS := l.NS(lab.Relay)
	for _, p := range []netip.Prefix{lab.RelayPool4, lab.SitePrefixes} {
		r := &netlink.Route{Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Type: unix.RTN_UNREACHABLE}
		if err := relayNS.Netlink().RouteDel(r); err != nil {
			t.Fatalf("remove the lab's route %v: %v", p, err)
		}
	}
	siteBound := func(c lab.Captured) bool {
		if !c.Outgoing {
			return false
		}
		if ip6, ok := c.Packet.NetworkLayer().(*layers.IPv6); ok {
			a, _ := netip.AddrFromSlice(ip6.DstIP)
			return lab.SitePrefixes.Contains(a)
		}
		if ip4, ok := c.Packet.NetworkLayer().(*layers.IPv4); ok {
			a, _ := netip.AddrFromSlice(ip4.DstIP.To4())
			return a == lab.SitePublic4
		}
		return false
	}
	capt, err := relayNS.Capture(string(lab.Inet), lab.CaptureOptions{Timeout: 4 * time.Second, Max: 1000, Match: siteBound})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// 3000-byte echoes leave srv6 and srv4 in fragments. Nothing answers
	// them (the relay cannot carry fragments): only where they go counts.
	_, err6 := l.NS(lab.Srv6).PingSize(ctx, u.Host, 3000)
	_, err4 := l.NS(lab.Srv4).PingSize(ctx, lab.SitePublic4, 3000)
	t.Logf("fragmented pings: IPv6 %v; IPv4 %v", err6, err4)
	pkts, err := capt.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) > 0 {
		t.Errorf("the relay sent %d packets addressed to the site back upstream (a routing loop); first: %v", len(pkts), pkts[0].Packet)
	}
	// The datapath did pass them to the kernel: the test sent what it means to.
	dp := e2e.Section(t, u.D.RelaySock, "datapath", "the relay's datapath counters", func(map[string]uint64) bool { return true })
	t.Logf("relay datapath: %v", dp)
}
