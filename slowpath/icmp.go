package slowpath

import (
	"time"

	"github.com/unmap-dev/unmap/session/ratelimit"
)

// NewICMPLimit bounds the ICMP errors an agent sends or relays, as a
// router's stack does its own: 100 a second after a burst of 50 (a
// traceroute sends 3 probes a hop, a few hops at once). The relay keys
// it by site, "" for its own time exceeded; the edge has only "".
func NewICMPLimit() *ratelimit.Limiter { return &ratelimit.Limiter{Rate: 100, Burst: 50} }

// SendTimeExceeded answers a packet whose hop limit ran out here as a
// router would, within limit's "" bucket: build makes the answer (nil
// when the packet is too malformed to quote). Each outcome is counted:
// ttl-exceeded-rate-limited, -malformed, -send-failed or -sent.
func (dp *Datapath) SendTimeExceeded(limit *ratelimit.Limiter, build func() []byte, count func(string)) {
	if !limit.Allow("", time.Now()) {
		count("ttl-exceeded-rate-limited")
		return
	}
	out := build()
	if out == nil {
		count("ttl-exceeded-malformed")
		return
	}
	if err := dp.Inj.Packet(out); err != nil {
		count("ttl-exceeded-send-failed")
		return
	}
	count("ttl-exceeded-sent")
}
