package relay

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// TestSharedIPv4ByPort: two sites share one public IPv4 with disjoint
// port sets (A+P, RFC 6346). An inbound flow goes to the site whose set
// holds its port, whichever site comes first in the grants; a pinned
// flow is given back to the site its port says.
func TestSharedIPv4ByPort(t *testing.T) {
	shared := netip.MustParseAddr("203.0.113.5")
	s := &Settings{
		Addresses:    []netip.Addr{netip.MustParseAddr("198.51.100.6")},
		CarrierPorts: config.PortRange{First: 20000, Last: 20999},
		Sites: []Site{
			{ID: "low", Prefix: netip.MustParsePrefix("2001:db8:5::/56"), IPv4: shared, IPv4Ports: config.PortRange{First: 1024, Last: 33791}, MaxFlows: 1000},
			{ID: "high", Prefix: netip.MustParsePrefix("2001:db8:7::/56"), IPv4: shared, IPv4Ports: config.PortRange{First: 33792, Last: 65535}, MaxFlows: 1000},
		},
	}
	c, err := newAgent(s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.now = (&clock{t: time.Unix(1_000_000, 0)}).now
	low := &fakeEdge{site: "low", id: 1, answer: refuseAll(proto.CodeRefused)}
	high := &fakeEdge{site: "high", id: 2, answer: refuseAll(proto.CodeRefused)}
	c.inb.edges = map[string]edgeSide{"low": low, "high": high}
	ctx := context.Background()
	for i := range 20 {
		for _, port := range []uint16{uint16(1024 + 1000*i), uint16(33792 + 1000*i)} {
			k := xlat.Key{Proto: uint8(session.UDP), Src: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), Dst: shared, SPort: 5000, DPort: port}
			c.inbound(ctx, k, []byte("x"))
			waitIdle(t, c)
		}
	}
	for _, e := range []*fakeEdge{low, high} {
		if got := e.offered(); got != 20 {
			t.Errorf("site %s was offered %d flows, want its 20", e.site, got)
		}
		for _, f := range e.offers {
			r := s.Sites[0].IPv4Ports
			if e.site == "high" {
				r = s.Sites[1].IPv4Ports
			}
			if !r.Contains(f.Site.Port()) {
				t.Errorf("site %s (ports %v) was offered %v", e.site, r, f)
			}
		}
	}
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	for _, tc := range []struct {
		to   netip.AddrPort
		site string
		ok   bool
	}{
		{netip.AddrPortFrom(shared, 1024), "low", true},
		{netip.AddrPortFrom(shared, 33791), "low", true},
		{netip.AddrPortFrom(shared, 33792), "high", true},
		{netip.AddrPortFrom(shared, 80), "", false}, // in neither set
		{netip.MustParseAddrPort("[2001:db8:7::1]:80"), "high", true},
	} {
		if site, ok := c.sites.siteOf(tc.to); site != tc.site || ok != tc.ok {
			t.Errorf("siteOf(%v) = %q %v, want %q %v", tc.to, site, ok, tc.site, tc.ok)
		}
	}
}
