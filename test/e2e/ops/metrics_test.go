package ops

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

// TestMetrics: with metrics_listen set, each agent serves /metrics on its
// namespace's loopback, with the datapath's reason counters, the
// flow-open latency histograms and the relay's per-site flows; an
// outbound UDP echo through a new flow moves the edge's flow-open
// histogram, its datapath's miss count, the relay's flows opened for the
// site and its flows held for it; an inbound one (srv6 to the LAN host)
// moves the relay's flow-open histogram. Both agents' route watchers
// run (a bump at start, no error), and a route added in the relay's
// namespace moves its bumps.
func TestMetrics(t *testing.T) {
	l := labtest.New(t, lab.Options{CGNMode: lab.CGNPreserve, CGNUDPTimeout: 30 * time.Second})
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	e2e.WithMetrics(t, d.RelayConfig)
	e2e.WithMetrics(t, d.EdgeConfig)
	d.StartRelay(t, l)
	d.StartEdge(t, l)
	d.DumpOnFailure(t)
	e2e.Section(t, d.EdgeS, "session", "the edge's session", func(s e2e.EdgeSession) bool { return s.Connected })
	host := e2e.WaitAddr(t, l.NS(lab.LAN), lab.SitePrefix)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fetch := func(role lab.Role) e2e.Scrape {
		t.Helper()
		s, err := e2e.FetchMetrics(ctx, l.NS(role))
		if err != nil {
			t.Fatalf("%s /metrics: %v", role, err)
		}
		return s
	}
	relay0, edge0 := fetch(lab.Relay), fetch(lab.Edge)
	for _, c := range []struct {
		what   string
		s      e2e.Scrape
		name   string
		labels []string
	}{
		{"relay: datapath misses", relay0, "unmap_datapath_packets_total", []string{`reason="miss"`, `agent="relay"`}},
		{"relay: datapath drops", relay0, "unmap_datapath_packets_total", []string{`reason="drop-miss-full"`, `action="drop"`}},
		{"edge: datapath misses", edge0, "unmap_datapath_packets_total", []string{`reason="miss"`, `agent="edge"`}},
		{"relay: flows of site home", relay0, "unmap_relay_site_flows", []string{`site="home"`}},
		{"relay: sessions", relay0, "unmap_relay_sessions", nil},
		{"relay: flow table", relay0, "unmap_datapath_table_ways", nil},
		{"edge: flow-open latency", edge0, "unmap_edge_flow_open_seconds_count", nil},
		{"relay: flow-open latency", relay0, "unmap_relay_flow_open_seconds_count", nil},
		{"edge: control round trips", edge0, "unmap_control_ping_rtt_seconds_count", nil},
	} {
		// The histograms by protocol have no series before a flow opens.
		if strings.HasSuffix(c.name, "_seconds_count") && strings.Contains(c.name, "flow_open") {
			continue
		}
		if _, ok := c.s.Get(c.name, c.labels...); !ok {
			t.Errorf("%s: no %s%v", c.what, c.name, c.labels)
		}
	}
	if n, _ := relay0.Get("unmap_relay_sessions"); n != 1 {
		t.Errorf("relay sessions = %v, want 1", n)
	}
	// Each agent's route watcher runs: its bump at subscription, no error.
	for _, c := range []struct {
		role lab.Role
		s    e2e.Scrape
	}{{lab.Relay, relay0}, {lab.Edge, edge0}} {
		if n, ok := c.s.Get("unmap_datapath_route_bumps_total"); !ok || n < 1 {
			t.Errorf("%s: route bumps %v (%v), want at least the watcher's first", c.role, n, ok)
		}
		if n, ok := c.s.Get("unmap_datapath_route_watch_errors_total"); !ok || n != 0 {
			t.Errorf("%s: route watch errors %v (%v), want 0", c.role, n, ok)
		}
	}
	// A route added in the relay's namespace (a blackhole for the
	// benchmarking prefix, which no packet here uses) bumps it again.
	_, bench, _ := net.ParseCIDR("198.18.0.0/15")
	if err := l.NS(lab.Relay).Netlink().RouteAdd(&netlink.Route{Dst: bench, Type: unix.RTN_BLACKHOLE}); err != nil {
		t.Fatal(err)
	}

	e2e.EchoServer(t, l.NS(lab.Srv6))
	if _, err := l.NS(lab.LAN).EchoUDP(ctx, netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort), "metrics-out"); err != nil {
		t.Fatalf("lan → srv6 UDP: %v", err)
	}
	e2e.EchoServer(t, l.NS(lab.LAN))
	if _, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(host, lab.EchoPort), "metrics-in"); err != nil {
		t.Fatalf("srv6 → lan UDP: %v", err)
	}

	// The relay counts the inbound flow's open when its held packets go,
	// a moment after the echo may have come back: poll, with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for {
		relay1, edge1 := fetch(lab.Relay), fetch(lab.Edge)
		var behind []string
		moved := func(what string, before, after e2e.Scrape, name string, labels ...string) {
			b, _ := before.Get(name, labels...)
			a, _ := after.Get(name, labels...)
			if a <= b {
				behind = append(behind, fmt.Sprintf("%s: %s%v %v → %v", what, name, labels, b, a))
			}
		}
		moved("edge", edge0, edge1, "unmap_edge_flow_open_seconds_count", `protocol="udp"`)
		moved("edge", edge0, edge1, "unmap_datapath_packets_total", `reason="miss"`)
		moved("edge", edge0, edge1, "unmap_datapath_table_used")
		moved("relay", relay0, relay1, "unmap_relay_site_flows_opened_total", `site="home"`)
		moved("relay", relay0, relay1, "unmap_relay_site_flows", `site="home"`)
		moved("relay", relay0, relay1, "unmap_relay_flow_open_seconds_count", `protocol="udp"`)
		moved("relay", relay0, relay1, "unmap_datapath_packets_total", `reason="miss"`)
		moved("relay", relay0, relay1, "unmap_datapath_route_bumps_total")
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, b := range behind {
				t.Errorf("did not move: %s", b)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}
