package relay

import (
	"cmp"
	"sync/atomic"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
)

// Inbound flows are opened by any Internet host, and each holds a relay
// port (and an edge port) for as long as it lives. Without a bound, one
// remote sending a datagram to a new port every few seconds holds every
// port of the site's pool (shared by every site behind the same CGNAT
// address) for the UDP timeout, and the site's own hosts can open
// nothing. So the relay counts the inbound flows it offered, from the
// offer until the flow ends, and offers no more than the configured
// number per site and per remote (an IPv6 /64 or an IPv4 address) to
// that site (inbound_limits in relay.yaml). The ports themselves are
// bounded too: inbound grants hold at most port_share of a pool and of
// the site's quota (ports.Relay.GrantInbound), the rest kept for the
// site's outbound flows. And inbound flows that prove nothing end soon:
// a UDP flow the LAN host never answered after unanswered_udp, a TCP
// flow whose remote never acknowledged the host's SYN/ACK (only a SYN,
// which anyone can spoof) on the transitory timeout, not the
// established one (expire.go, handshake.go).

// inFlow is an inbound flow the quotas count.
type inFlow struct {
	site, remote string    // remote: the site and remoteKey, as the quota counts it
	since        time.Time // offered
	answered     bool      // the LAN host answered (its side's counter moved)
}

// quota is inboundOffers's count of inbound flows; guarded by inboundOffers.mu.
type quota struct {
	limits   config.InboundBounds
	flows    map[session.Flow]*inFlow
	n        atomic.Int64 // len(flows), read without the lock (inboundOffers.forget)
	bySite   map[string]int
	byRemote map[string]int // by site and remote
}

// bounds are the limits, defaults in place of zero fields.
func (q *quota) bounds() config.InboundBounds {
	d := config.DefaultInbound()
	return config.InboundBounds{PerSite: cmp.Or(q.limits.PerSite, d.PerSite), PerRemote: cmp.Or(q.limits.PerRemote, d.PerRemote),
		PortShare: cmp.Or(q.limits.PortShare, d.PortShare), Unanswered: cmp.Or(q.limits.Unanswered, d.Unanswered)}
}

// admit counts f, a new inbound flow of site, if its site and its remote
// are under their quotas; else it returns the refusal's counter name.
func (q *quota) admit(f session.Flow, site string, now time.Time) (refused string) {
	if _, ok := q.flows[f]; ok {
		return "" // counted already (an offer again after a refusal)
	}
	b := q.bounds()
	remote := site + " " + remoteKey(f.Remote.Addr())
	switch {
	case q.bySite[site] >= b.PerSite:
		return "inbound-site-quota"
	case q.byRemote[remote] >= b.PerRemote:
		return "inbound-remote-quota"
	}
	if q.flows == nil {
		q.flows, q.bySite, q.byRemote = map[session.Flow]*inFlow{}, map[string]int{}, map[string]int{}
	}
	q.flows[f] = &inFlow{site: site, remote: remote, since: now}
	q.n.Add(1)
	q.bySite[site]++
	q.byRemote[remote]++
	return ""
}

// forget stops counting f; a flow not counted is ignored.
func (q *quota) forget(f session.Flow) {
	in, ok := q.flows[f]
	if !ok {
		return
	}
	delete(q.flows, f)
	q.n.Add(-1)
	if q.bySite[in.site]--; q.bySite[in.site] <= 0 {
		delete(q.bySite, in.site)
	}
	if q.byRemote[in.remote]--; q.byRemote[in.remote] <= 0 {
		delete(q.byRemote, in.remote)
	}
}

// unanswered reports whether f is an inbound flow on a UDP carrier that
// its LAN host has not answered for longer than the bound allows;
// answered says whether it has now (its counter moved), which stays.
func (q *quota) unanswered(f session.Flow, udp, answered bool, now time.Time) bool {
	in, ok := q.flows[f]
	if !ok || !udp || in.answered {
		return false
	}
	if answered {
		in.answered = true
		return false
	}
	return now.Sub(in.since) > q.bounds().Unanswered
}

// unproven is the inbound flows whose LAN host has not answered yet:
// those unanswered judges, once their carrier is known to be UDP.
func (q *quota) unproven() map[session.Flow]bool {
	out := map[session.Flow]bool{}
	for f, in := range q.flows {
		if !in.answered {
			out[f] = true
		}
	}
	return out
}

// halfOpen reports whether k is an inbound TCP flow whose remote has not
// acknowledged the host's SYN/ACK yet: it stays on the transitory
// timeout. backIn is set only by a segment that does (handshake.go).
func halfOpen(f session.Flow, k *carrier) bool {
	return k.inbound && f.Proto == session.TCP && k.lease.Proto == session.TCP && !k.backIn
}

// idleState is the timeout state an inbound flow's proof allows: a
// half-open TCP flow is transitory, whatever lifetime it was offered
// with.
func idleState(f session.Flow, k *carrier, state flows.State) flows.State {
	if state == flows.StateOpen && halfOpen(f, k) {
		return flows.StateTransitory
	}
	return state
}
