package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets span a flow opened on the LAN side alone (a picked
// relay port: well under a millisecond) to one waiting for a slow relay
// (4 s, past which a TCP SYN has been resent anyway).
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 2, 15)

// Latency is a flow-open latency histogram by protocol (tcp, udp, icmp,
// ...: session.Proto's names).
type Latency struct{ v *prometheus.HistogramVec }

// NewLatency declares a latency histogram.
func NewLatency(name, help string) *Latency {
	return &Latency{prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, []string{"protocol"})}
}

// Observe records one flow's open time.
func (l *Latency) Observe(protocol string, d time.Duration) {
	l.v.WithLabelValues(protocol).Observe(d.Seconds())
}

// Describe is prometheus.Collector's.
func (l *Latency) Describe(ch chan<- *prometheus.Desc) { l.v.Describe(ch) }

// Collect is prometheus.Collector's.
func (l *Latency) Collect(ch chan<- prometheus.Metric) { l.v.Collect(ch) }

// Labeled is a gauge or counter read on each scrape for each of a
// closed set of label values (sites, port pools, refusal reasons).
type Labeled struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	values func() []string
	read   func(string) float64
}

// NewLabeledGauge declares a gauge with one label; values lists the label
// values (read on each scrape: the sites configured), read each value.
func NewLabeledGauge(name, help, label string, values func() []string, read func(string) float64) *Labeled {
	return &Labeled{prometheus.NewDesc(name, help, []string{label}, nil), prometheus.GaugeValue, values, read}
}

// NewLabeledCounter is NewLabeledGauge for a counter kept elsewhere.
func NewLabeledCounter(name, help, label string, values func() []string, read func(string) float64) *Labeled {
	return &Labeled{prometheus.NewDesc(name, help, []string{label}, nil), prometheus.CounterValue, values, read}
}

// Describe is prometheus.Collector's.
func (l *Labeled) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

// Collect is prometheus.Collector's.
func (l *Labeled) Collect(ch chan<- prometheus.Metric) {
	for _, v := range l.values() {
		ch <- prometheus.MustNewConstMetric(l.desc, l.typ, l.read(v), v)
	}
}

// Gauge is a gauge read on each scrape.
func Gauge(name, help string, read func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, read)
}

// Table is the datapath's flow-table fill: ways, used and spilled keys,
// read together on each scrape.
type Table struct {
	ways, used, spilled *prometheus.Desc
	read                func() (ways, used, spilled int)
}

// Flow-table metric names.
const (
	TableWaysName    = "unmap_datapath_table_ways"
	TableUsedName    = "unmap_datapath_table_used"
	TableSpilledName = "unmap_datapath_table_spilled"
)

// NewTable declares the flow-table gauges of role's datapath.
func NewTable(role string, read func() (ways, used, spilled int)) *Table {
	l := prometheus.Labels{"agent": role}
	return &Table{
		ways:    prometheus.NewDesc(TableWaysName, "Ways (key slots) of the datapath's flow table.", nil, l),
		used:    prometheus.NewDesc(TableUsedName, "Ways of the flow table holding a key: its fill is used/ways.", nil, l),
		spilled: prometheus.NewDesc(TableSpilledName, "Keys whose bucket was full, held in the spill hashes instead (a slower lookup; many mean the table is too small for the flows).", nil, l),
		read:    read,
	}
}

// Describe is prometheus.Collector's.
func (t *Table) Describe(ch chan<- *prometheus.Desc) { ch <- t.ways; ch <- t.used; ch <- t.spilled }

// Collect is prometheus.Collector's.
func (t *Table) Collect(ch chan<- prometheus.Metric) {
	w, u, s := t.read()
	ch <- prometheus.MustNewConstMetric(t.ways, prometheus.GaugeValue, float64(w))
	ch <- prometheus.MustNewConstMetric(t.used, prometheus.GaugeValue, float64(u))
	ch <- prometheus.MustNewConstMetric(t.spilled, prometheus.GaugeValue, float64(s))
}

// Next-hop cache metric names (xdp/nexthop.go).
const (
	RouteBumpsName       = "unmap_datapath_route_bumps_total"
	RouteWatchErrorsName = "unmap_datapath_route_watch_errors_total"
)

// NewRoutes declares the next-hop cache's counters of role's datapath:
// its bumps (routing changes seen) and its watcher's errors.
func NewRoutes(role string, read func() (bumps, errors uint64)) []prometheus.Collector {
	l := prometheus.Labels{"agent": role}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: RouteBumpsName, ConstLabels: l,
			Help: "Times the datapath's next-hop cache was made stale: batches of routing messages (routes, rules, neighbours, links, addresses) the agent's watcher received."},
			func() float64 { b, _ := read(); return float64(b) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: RouteWatchErrorsName, ConstLabels: l,
			Help: "Errors of the routing watcher: a failed subscription (no watcher: cached next hops live their 50 ms), lost messages (the cache was made stale anyway), failed receives or bumps."},
			func() float64 { _, e := read(); return float64(e) }),
	}
}
