package cgnat

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/cgnat"
)

// The CGNAT agent's counters on the relay's /metrics, each declared once
// (OPERATING.md's metrics table lists them; relay's TestMetricsDocumented
// checks it does). What the datapath itself does with subscribers'
// packets (answers admin-prohibited, drops by reason) is counted there,
// under unmap_datapath_packets_total's cgnat-* reasons, not again here.
var (
	cgnatMetrics = metrics.NewSet("unmap_relay_cgnat_unknown_counter_total")
	fBlocks      = cgnatMetrics.Family("unmap_relay_cgnat_blocks_total", "Port blocks granted to subscribers, withdrawn from their record (empty for the grace time) and returned to the pool, by event.", "event")
	fRefused     = cgnatMetrics.Family("unmap_relay_cgnat_refused_total", "Subscribers whose new flow found no free port and got no block, so their new flows are answered ICMP administratively prohibited until a port frees up, by reason.", "reason")
	fExpired     = cgnatMetrics.Family("unmap_relay_cgnat_mappings_expired_total", "Mappings ended idle past their timeout, by protocol.", "protocol")
	fLog         = cgnatMetrics.Family("unmap_relay_cgnat_log_records_total", "Block log records (grants and releases), by result: written (and synced, or sent to syslog) or failed (the grant is then not made, the release retried at the next sweep).", "result")
	fFirst       = cgnatMetrics.Family("unmap_relay_cgnat_first_packets_total", "Subscribers' packets that found no free port (the datapath's cgnat-no-block), held while the agent granted a block and sent through the datapath again, by event.", "event")
	fErrors      = cgnatMetrics.Family("unmap_relay_cgnat_errors_total", "Errors of the CGNAT agent (grants, the sweep, port mapping), by operation; the relay's log says which.", "op")

	mGranted       = fBlocks.Value("granted")
	mWithdrawn     = fBlocks.Value("withdrawn")
	mReturned      = fBlocks.Value("returned")
	mRefusedQuota  = fRefused.ValueNamed("quota", "refused-quota")
	mRefusedPool   = fRefused.ValueNamed("pool-exhausted", "refused-pool-exhausted")
	mLogWritten    = fLog.ValueNamed("written", "log-written")
	mLogFailed     = fLog.ValueNamed("failed", "log-failed")
	mFirstResent   = fFirst.Value("resent")
	mFirstFailed   = fFirst.Value("resend-failed")
	mFirstTrunc    = fFirst.Value("truncated")
	mFirstNotIP    = fFirst.Value("not-ip")
	mErrGrant      = fErrors.ValueNamed("grant", "error-grant")
	mErrSweep      = fErrors.ValueNamed("sweep", "error-sweep")
	mErrPortMap    = fErrors.ValueNamed("port-mapping", "error-port-mapping")
	mExpiredByProt = [cgnat.Planes]metrics.Counter{
		fExpired.ValueNamed("tcp", "expired-tcp"), fExpired.ValueNamed("udp", "expired-udp"), fExpired.ValueNamed("icmp", "expired-icmp"),
	}
)

// planeNames are the protocols of the datapath's planes (0 TCP, 1 UDP,
// 2 ICMP echo), as the metrics label them.
var planeNames = [cgnat.Planes]string{"tcp", "udp", "icmp"}

// Names of the CGNAT's gauges (its counters: above).
const (
	blocksName      = "unmap_relay_cgnat_blocks"
	poolBlocksName  = "unmap_relay_cgnat_pool_blocks"
	subscribersName = "unmap_relay_cgnat_subscribers"
	spentName       = "unmap_relay_cgnat_subscribers_refused"
	mappingsName    = "unmap_relay_cgnat_mappings"
	mappings64Name  = "unmap_relay_cgnat_nat64_mappings"
)

// MetricFamilies are the CGNAT's declared counters (the relay's metrics
// test checks OPERATING.md's table against them).
func MetricFamilies() []*metrics.Family { return cgnatMetrics.Families() }

// Collectors are what the CGNAT adds to the relay's /metrics: its
// counters and gauges read from the agent at each scrape. A nil Agent's
// are all zero (the relay's metrics test lists them without a CGNAT).
func (a *Agent) Collectors() []prometheus.Collector {
	m := cgnatMetrics.New()
	if a != nil {
		m = a.M
	}
	book := func(f func(*Agent) int) func() float64 {
		return func() float64 {
			if a == nil || a.pool == nil {
				return 0
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			return float64(f(a))
		}
	}
	planes := func() []string { return planeNames[:] }
	return []prometheus.Collector{
		m,
		metrics.Gauge(blocksName, "Port blocks subscribers hold now (those withdrawn and not yet returned included).",
			book(func(a *Agent) int { return a.pool.Blocks() })),
		metrics.Gauge(poolBlocksName, "Port blocks of the pool: its addresses times the blocks on each (fill: unmap_relay_cgnat_blocks / this).",
			func() float64 {
				if a == nil {
					return 0
				}
				return float64(a.s.Datapath.NumBlocks())
			}),
		metrics.Gauge(subscribersName, "Subscribers holding blocks now.", book(func(a *Agent) int { return len(a.pool.Subscribers()) })),
		metrics.Gauge(spentName, "Subscribers refused now (at their quota, or the pool spent, with every port taken): their new flows are answered ICMP administratively prohibited.",
			book(func(a *Agent) int { return len(a.spent) })),
		metrics.NewLabeledGauge(mappingsName, "Mappings in the datapath at the last sweep (every 10 s), by protocol.", "protocol", planes,
			byPlane(a, func(a *Agent) *[cgnat.Planes]atomic.Int64 { return &a.mappings })),
		metrics.NewLabeledGauge(mappings64Name, "NAT64 mappings (of IPv6-only subscribers) among unmap_relay_cgnat_mappings at the last sweep, by the IPv4 protocol they map to (ICMPv6 echo: icmp).", "protocol", planes,
			byPlane(a, func(a *Agent) *[cgnat.Planes]atomic.Int64 { return &a.mappings64 })),
	}
}

// byPlane reads one of the agent's per-plane gauges by protocol name.
func byPlane(a *Agent, g func(*Agent) *[cgnat.Planes]atomic.Int64) func(string) float64 {
	return func(p string) float64 {
		if a == nil {
			return 0
		}
		for i, n := range planeNames {
			if n == p {
				return float64(g(a)[i].Load())
			}
		}
		return 0
	}
}
