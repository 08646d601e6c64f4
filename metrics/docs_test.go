package metrics

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/session/xlat"
)

// TestDatapathDocumented: the datapath's metrics (the reasons collector,
// the flow table's gauges and the next-hop cache's counters) are in OPERATING.md's metrics table, and
// every unmap_datapath_ metric it lists, or the Grafana dashboard
// (packaging/grafana) queries, is registered by them.
func TestDatapathDocumented(t *testing.T) {
	md, err := os.ReadFile("../OPERATING.md")
	if err != nil {
		t.Fatal(err)
	}
	cs := append([]prometheus.Collector{NewReasons("edge", func(*[xlat.NumReasons]uint64) error { return nil }),
		NewTable("edge", func() (int, int, int) { return 0, 0, 0 })},
		NewRoutes("edge", func() (uint64, uint64) { return 0, 0 })...)
	names := Names(cs...)
	for _, bad := range CheckDocs(DocTable(string(md)), []string{"unmap_datapath_"}, names, nil) {
		t.Error(bad)
	}
	dash, err := os.ReadFile("../packaging/grafana/unmap.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range CheckDashboard(string(dash), []string{"unmap_datapath_"}, names) {
		t.Error(bad)
	}
	// The agents' tests check the rest, by prefix: no query is outside them.
	for _, n := range DashboardNames(string(dash)) {
		if !strings.HasPrefix(n, "unmap_datapath_") && !strings.HasPrefix(n, "unmap_relay_") &&
			!strings.HasPrefix(n, "unmap_edge_") && !strings.HasPrefix(n, "unmap_control_") {
			t.Errorf("the dashboard queries %s, which no test checks", n)
		}
	}
}
