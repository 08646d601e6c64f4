package slowpath

import (
	"time"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/ratelimit"
)

// NewICMPLimit bounds the ICMP errors an agent sends or relays, as a
// router's stack does its own: 100 a second after a burst of 50 (a
// traceroute sends 3 probes a hop, a few hops at once). The relay keys
// it by site, "" for its own time exceeded; the edge has only "".
func NewICMPLimit() *ratelimit.Limiter { return &ratelimit.Limiter{Rate: 100, Burst: 50} }

// SendTimeExceeded answers a packet whose hop limit ran out here as a
// router would, within limit's "" bucket: build makes the answer (nil
// when the packet is too malformed to quote). Each outcome is counted in
// m under the agent's declared counters c.
func (dp *Datapath) SendTimeExceeded(limit *ratelimit.Limiter, build func() []byte, m *metrics.Counters, c TimeExceededCounters) {
	if !limit.Allow("", time.Now()) {
		m.Inc(c.RateLimited)
		return
	}
	out := build()
	if out == nil {
		m.Inc(c.Malformed)
		return
	}
	if err := dp.Inj.Packet(out); err != nil {
		m.Inc(c.SendFailed)
		return
	}
	m.Inc(c.Sent)
}

// TimeExceededCounters are the counters, declared by each agent (its
// metrics.go), SendTimeExceeded counts its outcomes under:
// ttl-exceeded-rate-limited, -malformed, -send-failed and -sent.
type TimeExceededCounters struct{ RateLimited, Malformed, SendFailed, Sent metrics.Counter }
