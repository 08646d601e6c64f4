package edge

import "github.com/prometheus/client_golang/prometheus"

// collectors are the port mapping service's metrics, unmap_edge_portmap_*
// (OPERATING.md, "Metrics").
func (p *portMapper) collectors() []prometheus.Collector {
	return p.tab.Collectors("edge", "on the LAN", []string{"pcp", "nat-pmp", "upnp"})
}
