package slowpath

import "github.com/unmap-dev/unmap/session/ratelimit"

// NewICMPLimit bounds the ICMP errors an agent sends or relays, as a
// router's stack does its own: 100 a second after a burst of 50 (a
// traceroute sends 3 probes a hop, a few hops at once). The relay keys
// it by site, "" for its own time exceeded; the edge has only "".
func NewICMPLimit() *ratelimit.Limiter { return &ratelimit.Limiter{Rate: 100, Burst: 50} }
