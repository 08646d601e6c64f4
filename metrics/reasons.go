package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/unmap-dev/unmap/session/xlat"
)

// ReasonsName is the datapath's per-reason packet counter.
const ReasonsName = "unmap_datapath_packets_total"

// Reasons exports the datapath's per-CPU reason counters: read (summed
// over CPUs) on each scrape, one sample per reason with its XDP action.
// The descriptor, label pairs and metrics are built once; a scrape reads
// into a fixed array and sends the same metrics again, so it allocates
// nothing per reason.
type Reasons struct {
	read func(*[xlat.NumReasons]uint64) error

	mu      sync.Mutex // one read at a time into buf
	buf     [xlat.NumReasons]uint64
	desc    *prometheus.Desc
	metrics [xlat.NumReasons]reasonMetric
}

// reasonMetric is one reason's sample; its value is stored by Collect and
// read by Write (which the registry may call after Collect returned).
type reasonMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	v      atomic.Uint64
}

func (m *reasonMetric) Desc() *prometheus.Desc { return m.desc }

func (m *reasonMetric) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Counter = &dto.Counter{Value: proto.Float64(float64(m.v.Load()))}
	return nil
}

// NewReasons makes the collector of role's datapath (edge or relay);
// read fills the sums (xdp.Datapath.ReadReasons).
func NewReasons(role string, read func(*[xlat.NumReasons]uint64) error) *Reasons {
	r := &Reasons{read: read, desc: prometheus.NewDesc(ReasonsName,
		"Packets the XDP programs did not translate, by reason (none: translated) and action (translate, pass to the kernel, agent, consume, answer, drop).",
		[]string{"reason", "action"}, prometheus.Labels{"agent": role})}
	for i := range r.metrics {
		reason := xlat.Reason(i)
		r.metrics[i].desc = r.desc
		r.metrics[i].labels = []*dto.LabelPair{
			{Name: proto.String("action"), Value: proto.String(reasonAction(reason))},
			{Name: proto.String("agent"), Value: proto.String(role)},
			{Name: proto.String("reason"), Value: proto.String(reason.String())},
		}
	}
	return r
}

// reasonAction names what the program did with a packet of reason r: its
// own names for the packets that went on to the agent or were consumed,
// else the XDP action the reason carries (xlat.Reason.Verdict).
func reasonAction(r xlat.Reason) string {
	switch {
	case r == xlat.ReasonNone:
		return "translate"
	case r.ToAgent():
		return "agent"
	case r == xlat.ReasonKeepalive:
		return "consume"
	case r.Verdict() == xlat.Pass: // the action written beside each reason (xdp/bpf/reasons.h)
		return "pass"
	case r.Verdict() == xlat.TX: // the CGNAT's refusals, answered on the interface they came in on
		return "answer"
	}
	return "drop"
}

func (r *Reasons) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

// Collect reads the counters and sends every reason's sample; a failed
// read sends an invalid metric (the scrape reports it) and nothing else.
func (r *Reasons) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	err := r.read(&r.buf)
	if err == nil {
		for i := range r.metrics {
			r.metrics[i].v.Store(r.buf[i])
		}
	}
	r.mu.Unlock()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(r.desc, err)
		return
	}
	for i := range r.metrics {
		ch <- &r.metrics[i]
	}
}
