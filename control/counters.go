package control

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
)

// Counters are the control channel's event counts: every refusal, every
// connection closed for a protocol error, every flow result, declared in
// metrics.go. Their readable names (`unmap status`, Get) are stable and
// built from SPEC.md's code names and pki's reasons:
//
//	tls_refused_<pki reason>      a certificate refused in the handshake
//	session_refused_<code>        a Hello refused (unknown-site, prefix-not-granted...)
//	conn_closed_<code>            a connection closed for a protocol error (malformed, too-large...)
//	flow_refused_<code>           a FlowOpen or replay entry refused
//	offer_refused_<code>          an offer the edge refused (or timeout)
//	sessions_started, sessions_ended, flows_opened, flows_closed,
//	offers_sent, offers_accepted, replay_entries, advisory_skipped,
//	late_replies, reconnects, dial_failed
//	send_queue_full, send_stalled, send_failed  a session closed: its edge did not read what it was sent
//	send_dropped_<type>           an advisory message (icmp-error) dropped: the edge's queue was full
//	replay_throttled              a complete replay that waited its turn (one per 5 s per session)
//
// The zero value is ready; it is a prometheus.Collector.
type Counters struct {
	once       sync.Once
	m          *metrics.Counters
	rtt, grant prometheus.Histogram // edge: Ping -> Pong, FlowOpen -> FlowGrant
}

// Control round-trip histograms: the edge's Ping to the relay's Pong,
// and its FlowOpen to the relay's FlowGrant (what a new outbound flow
// waits for when the edge does not pick its relay port itself).
const (
	PingRTTName   = "unmap_control_ping_rtt_seconds"
	FlowGrantName = "unmap_control_flow_grant_seconds"
)

// rttBuckets span a LAN (0.5 ms) to a congested intercontinental path (4 s).
var rttBuckets = prometheus.ExponentialBuckets(0.0005, 2, 14)

func (c *Counters) vals() *metrics.Counters {
	c.once.Do(func() {
		c.m = controlMetrics.New()
		c.rtt = prometheus.NewHistogram(prometheus.HistogramOpts{Name: PingRTTName, Help: "Control channel round trips: a Ping to its Pong (edge).", Buckets: rttBuckets})
		c.grant = prometheus.NewHistogram(prometheus.HistogramOpts{Name: FlowGrantName, Help: "A FlowOpen to its FlowGrant, granted or refused (edge).", Buckets: rttBuckets})
	})
	return c.m
}

func (c *Counters) observePing(d time.Duration) {
	c.vals()
	c.rtt.Observe(d.Seconds())
}

func (c *Counters) observeGrant(d time.Duration) {
	c.vals()
	c.grant.Observe(d.Seconds())
}

func (c *Counters) inc(k metrics.Counter) { c.vals().Inc(k) }

func (c *Counters) addN(k metrics.Counter, n uint64) { c.vals().Add(k, n) }

// Get returns one counter by its readable name; one never incremented,
// or not declared, is 0.
func (c *Counters) Get(name string) uint64 { return c.vals().GetName(name) }

// Snapshot copies every counter that moved, by readable name.
func (c *Counters) Snapshot() map[string]uint64 { return c.vals().Snapshot() }

func (c *Counters) code(f *codes, code proto.Code) { c.inc(f.of(code)) }

func (c *Counters) tls(r pki.Reason) {
	k, ok := fTLSRefused.by[r]
	if !ok {
		c.vals().IncName("tls_refused_" + string(r)) // not declared: counted as unknown, a bug
		return
	}
	c.inc(k)
}

// sum adds up a family's counters.
func (c *Counters) sum(f *codes) uint64 { return c.vals().Sum(f.fam) }

// Describe is prometheus.Collector's.
func (c *Counters) Describe(ch chan<- *prometheus.Desc) {
	c.vals().Describe(ch)
	c.rtt.Describe(ch)
	c.grant.Describe(ch)
}

// Collect is prometheus.Collector's.
func (c *Counters) Collect(ch chan<- prometheus.Metric) {
	c.vals().Collect(ch)
	c.rtt.Collect(ch)
	c.grant.Collect(ch)
}

// dropped counts an advisory message of type typ dropped for a full
// queue; a type that is not advisory is a bug (counted as unknown).
func (c *Counters) dropped(typ proto.Type) {
	if k, ok := sendDropped[typ]; ok {
		c.inc(k)
		return
	}
	c.vals().IncName("send_dropped_" + typ.String())
}
