package edge

import (
	"cmp"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/slowpath"
)

// The edge owns its carrier ports, so it bounds the inbound flows it
// accepts whatever the relay offers (inbound_limits in edge.yaml): at
// most per_site at once, at most per_remote from one remote (an IPv6 /64
// or an IPv4 address), their ports within port_share of each protocol's
// range (ports.Edge.GrantInbound), the rest kept for the LAN's own
// outbound flows. An inbound flow that proves nothing ends soon: a UDP
// flow the LAN host never answered after unanswered_udp; a TCP flow
// stays on the transitory timeout after its carrier handshake until
// both its remote and its host have sent something past it (a remote
// that only sent a SYN, which anyone can spoof, never does).

// inboundFlow is an accepted inbound flow the quota counts.
type inboundFlow struct {
	remote   string
	since    time.Time
	answered bool // the LAN host sent something on it
	halfOpen bool // TCP after its carrier handshake, not yet proved
}

// inboundQuota counts the accepted inbound flows; safe for concurrent
// use.
type inboundQuota struct {
	limits config.InboundBounds
	now    func() time.Time

	mu       sync.Mutex
	flows    map[session.Flow]*inboundFlow
	byRemote map[string]int
}

func newInboundQuota(b config.InboundBounds) *inboundQuota {
	d := config.DefaultInbound()
	b = config.InboundBounds{PerSite: cmp.Or(b.PerSite, d.PerSite), PerRemote: cmp.Or(b.PerRemote, d.PerRemote),
		PortShare: cmp.Or(b.PortShare, d.PortShare), Unanswered: cmp.Or(b.Unanswered, d.Unanswered)}
	return &inboundQuota{limits: b, now: time.Now, flows: map[session.Flow]*inboundFlow{}, byRemote: map[string]int{}}
}

// remoteOf is what the quota counts a remote by: its /64, or its IPv4
// address.
func remoteOf(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// admit counts f if the site and f's remote are under their quotas;
// else it returns the refusal's counter name.
func (q *inboundQuota) admit(f session.Flow) (refused string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.flows[f]; ok {
		return "inbound-flow-exists"
	}
	r := remoteOf(f.Remote.Addr())
	switch {
	case len(q.flows) >= q.limits.PerSite:
		return "inbound-site-quota"
	case q.byRemote[r] >= q.limits.PerRemote:
		return "inbound-remote-quota"
	}
	q.flows[f] = &inboundFlow{remote: r, since: q.now()}
	q.byRemote[r]++
	return ""
}

// forget stops counting f; a flow not counted is ignored.
func (q *inboundQuota) forget(f session.Flow) {
	q.mu.Lock()
	defer q.mu.Unlock()
	in, ok := q.flows[f]
	if !ok {
		return
	}
	delete(q.flows, f)
	if q.byRemote[in.remote]--; q.byRemote[in.remote] <= 0 {
		delete(q.byRemote, in.remote)
	}
}

// setHalfOpen marks f, an inbound TCP flow whose carrier handshake just
// completed, as not yet proved.
func (q *inboundQuota) setHalfOpen(f session.Flow) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if in, ok := q.flows[f]; ok {
		in.halfOpen = true
	}
}

// verdict is what check says of an inbound flow.
type verdict uint8

const (
	keep       verdict = iota
	unanswered         // a UDP-carried flow its host never answered in time: end it
	proved             // a half-open TCP flow both ends sent on: established now
)

// check judges inbound flow f on carrier c by its datapath counters.
func (q *inboundQuota) check(f session.Flow, c session.Carrier, fa slowpath.Activity) verdict {
	q.mu.Lock()
	defer q.mu.Unlock()
	in, ok := q.flows[f]
	if !ok {
		return keep
	}
	switch {
	case in.halfOpen && !fa.Closed && fa.Out > 0 && fa.Back > 0:
		in.halfOpen = false
		return proved
	case c.Proto != session.UDP || in.answered:
		return keep
	case fa.Out > 0:
		in.answered = true
		return keep
	case q.now().Sub(in.since) > q.limits.Unanswered:
		return unanswered
	}
	return keep
}

// count is how many inbound flows are counted.
func (q *inboundQuota) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.flows)
}

// takeInbound is take for an accepted inbound flow: within the quotas
// and the inbound share of the carrier ports, each refusal counted.
func (a *agent) takeInbound(f session.Flow, cp session.Proto, relay netip.AddrPort, token proto.BindToken) (session.Carrier, error) {
	if why := a.inq.admit(f); why != "" {
		a.count(why)
		return session.Carrier{}, errors.New(why)
	}
	c, err := a.takeFrom(a.ports.GrantInbound, f, cp, relay, token)
	if err != nil {
		a.inq.forget(f)
		if errors.Is(err, ports.ErrInboundShare) {
			a.m.Inc(mInboundPortShare) // the rest of the ports is kept for outbound flows
		}
	}
	return c, err
}

// checkInbound applies check's verdicts to f (touchActive).
func (a *agent) checkInbound(e flows.Entry, fa slowpath.Activity) {
	switch a.inq.check(e.Flow, e.Carrier, fa) {
	case unanswered:
		a.m.Inc(mInboundUnanswered)
		a.drop(e.Flow, e.Carrier)
		if a.ctl != nil {
			if err := a.ctl.Close(e.Flow, proto.CodeExpired); err != nil {
				a.log.Debug("flow close not sent; the next replay leaves it out", "flow", e.Flow, "err", err)
			}
		}
	case proved:
		if e.State == flows.StateTransitory && a.flows.Update(e.Flow, e.Carrier, flows.StateOpen) == nil {
			a.m.Inc(mInboundTCPEstablished)
		}
	}
}
