package relay

import (
	"os"
	"slices"
	"testing"

	"github.com/unmap-dev/unmap/cgnat"
	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/metrics"
)

// TestMetricsDocumented: every metric the relay's /metrics registers
// (its counters, gauges and histograms, the control channel's and the
// CGNAT's, which a relay with a cgnat section adds) is in
// OPERATING.md's metrics table with every label value of its counters,
// and every unmap_relay_ or unmap_control_ metric the table lists is
// registered.
func TestMetricsDocumented(t *testing.T) {
	md, err := os.ReadFile("../OPERATING.md")
	if err != nil {
		t.Fatal(err)
	}
	fx := newBindFixture(t)
	cs, err := fx.c.collectors(&Settings{Sites: []Site{{ID: "home"}}}, new(control.Counters))
	if err != nil {
		t.Fatal(err)
	}
	cs = append(cs, (*cgnat.Agent)(nil).Collectors()...)
	fams := slices.Concat(relayMetrics.Families(), control.MetricFamilies(), cgnat.MetricFamilies())
	names := metrics.Names(cs...)
	// With a CGNAT whose port mapping is on (none in this fixture).
	names = append(names, metrics.Names((&cgnat.PortMapper{}).Collectors()...)...)
	for _, bad := range metrics.CheckDocs(metrics.DocTable(string(md)), []string{"unmap_relay_", "unmap_control_"}, names, fams) {
		t.Error(bad)
	}
	dash, err := os.ReadFile("../packaging/grafana/unmap.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range metrics.CheckDashboard(string(dash), []string{"unmap_relay_", "unmap_control_"}, names) {
		t.Error(bad)
	}
}
