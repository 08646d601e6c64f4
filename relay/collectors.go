package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/ports"
)

// Names of the relay's gauges and histograms (its counters: metrics.go).
const (
	flowOpenName     = "unmap_relay_flow_open_seconds"
	siteFlowsName    = "unmap_relay_site_flows"
	siteOpenedName   = "unmap_relay_site_flows_opened_total"
	siteClosedName   = "unmap_relay_site_flows_closed_total"
	siteRefusedName  = "unmap_relay_site_flows_refused_total"
	sessionsName     = "unmap_relay_sessions"
	portsInUseName   = "unmap_relay_ports_in_use"
	portsPoolsName   = "unmap_relay_port_pools"
	portsRefusedName = "unmap_relay_ports_refused_total"
)

// newOpenLatency is the inbound flow-open latency: a remote's first
// packet (the miss) to the carrier bound, its entries installed and the
// held packets sent.
func newOpenLatency() *metrics.Latency {
	return metrics.NewLatency(flowOpenName, "Inbound flows: the remote's first packet to the flow's entries installed (the edge accepted the offer and its carrier bound), by protocol.")
}

// collectors are everything the relay's /metrics serves, srv's (the
// control channel's counters: ctl) included; c.dp may be nil (control only).
func (c *agent) collectors(s *Settings, ctl *control.Counters) ([]prometheus.Collector, error) {
	ids := make([]string, len(s.Sites))
	for i, site := range s.Sites {
		ids[i] = site.ID
	}
	sites := func() []string { return ids }
	perSite := func(get func(*siteCounts) uint64) func(string) float64 {
		return func(site string) float64 {
			sc := c.sessions.counts(site)
			return float64(get(&sc))
		}
	}
	reasons := func() []string {
		out := make([]string, len(ports.Reasons))
		for i, r := range ports.Reasons {
			out[i] = string(r)
		}
		return out
	}
	cs := []prometheus.Collector{
		c.m, ctl, c.openLatency,
		metrics.NewLabeledGauge(siteFlowsName, "Flows the relay holds for each site (the carrier ports they hold).", "site", sites,
			func(site string) float64 { return float64(c.ports.Held(site)) }),
		metrics.NewLabeledCounter(siteOpenedName, "Flows opened for each site (FlowOpens granted, inbound offers taken).", "site", sites,
			perSite(func(sc *siteCounts) uint64 { return sc.opens })),
		metrics.NewLabeledCounter(siteClosedName, "Flows of each site closed.", "site", sites,
			perSite(func(sc *siteCounts) uint64 { return sc.closes })),
		metrics.NewLabeledCounter(siteRefusedName, "FlowOpens and replayed entries of each site refused.", "site", sites,
			perSite(func(sc *siteCounts) uint64 { return sc.refusals })),
		metrics.Gauge(sessionsName, "Edges connected on the control channel.", func() float64 {
			return float64(c.sessions.connected())
		}),
		metrics.Gauge(portsInUseName, "Carrier ports in use, all sites.", func() float64 { return float64(c.ports.Stats().InUse) }),
		metrics.Gauge(portsPoolsName, "Carrier port pools with state: (relay address, CGNAT address, protocol) keys.", func() float64 { return float64(c.ports.Stats().Pools) }),
		metrics.NewLabeledCounter(portsRefusedName, "Carrier port grants and releases refused by the allocator, by reason.", "reason", reasons,
			func(r string) float64 { return float64(c.ports.Refused.Get(ports.Reason(r))) }),
	}
	if c.dp != nil {
		rr, err := c.dp.XDP.NewReasonReader()
		if err != nil {
			return nil, err
		}
		d := c.dp.XDP
		cs = append(cs, metrics.NewReasons("relay", rr.Read), metrics.NewTable("relay", func() (int, int, int) {
			t := d.TableStats()
			return t.Ways, t.Used, t.Spilled
		}))
		cs = append(cs, metrics.NewRoutes("relay", func() (uint64, uint64) {
			r := d.RouteStats()
			return r.Bumps, r.WatchErrors
		})...)
		if c.dp.cg != nil {
			cs = append(cs, c.dp.cg.A.Collectors()...) // the CGNAT's blocks, subscribers, mappings, log
			if c.dp.cg.PM != nil {
				cs = append(cs, c.dp.cg.PM.Collectors()...) // port mapping for subscribers
			}
		}
	}
	return cs, nil
}
