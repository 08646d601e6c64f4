package portmap

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/metrics"
)

// Status is what an agent's `unmap status` shows of its port mapping
// service: each mapping (who asked by which protocol, what, until when)
// and the table's counters.
func (t *Table) Status() any {
	type row struct {
		Via      string `json:"via"`
		Proto    string `json:"proto"`
		Client   string `json:"client"`
		Internal string `json:"internal"`
		External string `json:"external"`
		Until    string `json:"until"`
		Filters  int    `json:"filters,omitempty"`
		Desc     string `json:"description,omitempty"`
	}
	rows := []row{}
	for _, m := range t.Mappings() {
		rows = append(rows, row{Via: m.Via.String(), Proto: m.Proto.String(), Client: m.Client.String(),
			Internal: m.Internal.String(), External: m.External.String(), Until: m.Expires.UTC().Format(time.RFC3339),
			Filters: len(m.Filters), Desc: m.Description})
	}
	return map[string]any{"mappings": rows, "counts": t.Counts()}
}

// portMapEvents are the table's counters of mappings' lives.
var portMapEvents = []string{"granted", "released", "expired", "restored"}

// Collectors are the table's metrics, read from its counters on each
// scrape, named unmap_<agent>_portmap_* (OPERATING.md, "Metrics"):
// requests by protocol (those the agent serves), mappings' events,
// refusals by reason, and the mappings held. who says whose requests the
// help texts count ("on the LAN").
func (t *Table) Collectors(agent, who string, protocols []string) []prometheus.Collector {
	count := func(prefix string) func(string) float64 {
		return func(v string) float64 { return float64(t.Counts()[prefix+v]) }
	}
	name := func(n string) string { return "unmap_" + agent + "_portmap_" + n }
	return []prometheus.Collector{
		metrics.NewLabeledCounter(name("requests_total"), "Port mapping requests served "+who+", by protocol.", "protocol",
			func() []string { return protocols }, count("requests-")),
		metrics.NewLabeledCounter(name("events_total"), "Port mappings "+who+" granted, released by their client, expired and restored after a restart, by event.", "event",
			func() []string { return portMapEvents }, count("")),
		metrics.NewLabeledCounter(name("refused_total"), "Port mapping requests "+who+" refused, by reason.", "reason",
			RefusalNames, count("refused-")),
		metrics.Gauge(name("mappings"), "Port mappings "+who+" held now.", func() float64 { return float64(len(t.Mappings())) }),
	}
}
