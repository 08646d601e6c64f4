package edge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/portmap"
)

// The port mapping service's metrics (OPERATING.md, "Metrics"), read from
// its table's counters on each scrape.
const (
	portMapRequestsName = "unmap_edge_portmap_requests_total"
	portMapEventsName   = "unmap_edge_portmap_events_total"
	portMapRefusedName  = "unmap_edge_portmap_refused_total"
	portMapActiveName   = "unmap_edge_portmap_mappings"
)

var (
	portMapProtocols = []string{"pcp", "nat-pmp", "upnp"}
	portMapEvents    = []string{"granted", "released", "expired", "restored"}
)

// collectors are the port mapping service's metrics.
func (p *portMapper) collectors() []prometheus.Collector {
	count := func(prefix string) func(string) float64 {
		return func(v string) float64 { return float64(p.tab.Counts()[prefix+v]) }
	}
	return []prometheus.Collector{
		metrics.NewLabeledCounter(portMapRequestsName, "Port mapping requests served on the LAN, by protocol.", "protocol",
			func() []string { return portMapProtocols }, count("requests-")),
		metrics.NewLabeledCounter(portMapEventsName, "Port mappings granted, released by their client, expired and restored after a restart, by event.", "event",
			func() []string { return portMapEvents }, count("")),
		metrics.NewLabeledCounter(portMapRefusedName, "Port mapping requests refused, by reason.", "reason",
			portmap.RefusalNames, count("refused-")),
		metrics.Gauge(portMapActiveName, "Port mappings held now.", func() float64 { return float64(len(p.tab.Mappings())) }),
	}
}
