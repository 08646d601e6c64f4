package edge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/ports"
)

// Names of the edge's gauges and histograms (its counters: metrics.go).
const (
	flowOpenName      = "unmap_edge_flow_open_seconds"
	flowsName         = "unmap_edge_flows"
	sessionName       = "unmap_edge_session_up"
	portsInUseName    = "unmap_edge_ports_in_use"
	portsRefusedName  = "unmap_edge_ports_refused_total"
	inboundPolicyName = "unmap_edge_inbound_policy_total"
	flowEventsName    = "unmap_edge_flow_table_total"
	flowsRefusedName  = "unmap_edge_flow_table_refused_total"
)

// flowEvents and flowRefusals are the closed sets of the flow table's
// counters (flows.Stats).
var (
	flowEvents   = []string{"added", "expired", "deleted"}
	flowRefusals = []string{flows.ReasonDuplicate, flows.ReasonFull, flows.ReasonUnknownFlow, flows.ReasonBadState}
)

// newOpenLatency is the outbound flow-open latency: a LAN host's first
// packet (the miss) to the flow's entries installed, the relay's grant
// included unless the edge picked the relay port itself.
func newOpenLatency() *metrics.Latency {
	return metrics.NewLatency(flowOpenName, "Outbound flows: the LAN host's first packet to the flow's entries installed (with the relay's FlowGrant, unless the edge picked the relay port), by protocol.")
}

// collectors are everything the edge's /metrics serves, the control
// channel's counters (ctl) and the datapath's (dp, may be nil) included.
func (a *agent) collectors(ctl *control.Counters, dp *datapath) ([]prometheus.Collector, error) {
	reasons := func() []string {
		out := make([]string, len(ports.Reasons))
		for i, r := range ports.Reasons {
			out[i] = string(r)
		}
		return out
	}
	policy := func() []string {
		out := make([]string, numRefusals)
		for r := range numRefusals {
			out[r] = r.String()
		}
		return out
	}
	cs := []prometheus.Collector{
		a.m, ctl, a.openLatency,
		metrics.Gauge(flowsName, "Flows in the edge's table (it is authoritative: the relay follows it).", func() float64 { return float64(a.flows.Stats().Flows) }),
		metrics.NewLabeledCounter(flowEventsName, "Flows added to the edge's table, expired (idle past their timeout) and deleted (closed), by event.", "event",
			func() []string { return flowEvents }, func(ev string) float64 {
				st := a.flows.Stats()
				return float64(map[string]uint64{"added": st.Added, "expired": st.Expired, "deleted": st.Deleted}[ev])
			}),
		metrics.NewLabeledCounter(flowsRefusedName, "Flow-table operations refused, by reason (table-full: the table's bound on flows).", "reason",
			func() []string { return flowRefusals }, func(r string) float64 { return float64(a.flows.Stats().Refused[r]) }),
		metrics.Gauge(sessionName, "1 while the control session with the relay is up.", func() float64 {
			if _, up := a.Grant(); up {
				return 1
			}
			return 0
		}),
		metrics.Gauge(portsInUseName, "Carrier ports (E) in use.", func() float64 { return float64(a.ports.InUse()) }),
		metrics.NewLabeledCounter(portsRefusedName, "Carrier port grants and releases refused by the allocator, by reason.", "reason", reasons,
			func(r string) float64 { return float64(a.ports.Refused.Get(ports.Reason(r))) }),
		metrics.NewLabeledCounter(inboundPolicyName, "Inbound flows offered by the relay: accepted, or refused by the site's policy, by result.", "result", policy,
			func(r string) float64 { return float64(a.policy.Counts()[r]) }),
	}
	if dp != nil {
		rr, err := dp.XDP.NewReasonReader()
		if err != nil {
			return nil, err
		}
		d := dp.XDP
		cs = append(cs, metrics.NewReasons("edge", rr.Read), metrics.NewTable("edge", func() (int, int, int) {
			t := d.TableStats()
			return t.Ways, t.Used, t.Spilled
		}))
		cs = append(cs, metrics.NewRoutes("edge", func() (uint64, uint64) {
			r := d.RouteStats()
			return r.Bumps, r.WatchErrors
		})...)
	}
	return cs, nil
}
