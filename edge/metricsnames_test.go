package edge

import (
	"log/slog"
	"net/netip"
	"os"
	"testing"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/portmap"
)

// TestMetricsDocumented: every metric the edge's /metrics registers (the
// port mapping service's too) is
// in OPERATING.md's metrics table with every label value of its
// counters, and every unmap_edge_ metric the table lists is registered, and every such metric the Grafana dashboard
// (packaging/grafana) queries is registered.
func TestMetricsDocumented(t *testing.T) {
	md, err := os.ReadFile("../OPERATING.md")
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Site: "home", Relay: "relay:443", LAN: "lan", WAN: "wan", TLS: confTLS("x")}
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(s, netip.MustParseAddr("100.64.0.2"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := a.collectors(new(control.Counters), nil)
	if err != nil {
		t.Fatal(err)
	}
	pm := &portMapper{tab: portmap.NewTable(portmap.Policy{}, portmap.NewMemBackend(netip.MustParseAddr("203.0.113.10"), 1024, 2047), slog.New(slog.DiscardHandler))}
	cs = append(cs, pm.collectors()...)
	names := metrics.Names(cs...)
	for _, bad := range metrics.CheckDocs(metrics.DocTable(string(md)), []string{"unmap_edge_"}, names, edgeMetrics.Families()) {
		t.Error(bad)
	}
	dash, err := os.ReadFile("../packaging/grafana/unmap.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range metrics.CheckDashboard(string(dash), []string{"unmap_edge_"}, names) {
		t.Error(bad)
	}
}
