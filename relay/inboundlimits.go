package relay

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/ports"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/ratelimit"
	"github.com/unmap-dev/unmap/session"
)

// What one Internet host can make the relay's inbound slow path hold and
// the edge decide. An offer holds a relay port, a goroutine and (TCP) an
// edge port and a SYN at the LAN host until it is answered and its
// carrier opened (at most inboundSetup): per site, at most
// maxPendingPerSite at once; beyond, a new flow's packets are dropped
// until one ends. Held packets are bounded per flow (maxHeld,
// maxHeldTCP) and in all (maxHeldAll), whatever the number of sites.
const (
	maxPendingPerSite = 64
	maxHeldAll        = 4096
)

// What one remote (an IPv6 /64, which one host or network usually has
// whole, or an IPv4 address) can make the relay offer one site: offerRate
// new flows a second, offerBurst at once. A remote sweeping a site's ports,
// or cycling its own source port, costs the site's edge a control message
// and a decision per flow; this keeps it from taking the site's pending
// offers from everyone else. Browsers open a handful of connections at
// once and peers of a peer-to-peer application are many remotes, so a
// legitimate remote stays well under it.
const (
	offerRate  = 20
	offerBurst = 40
)

// edgeSide is what an inbound offer needs of the site's session:
// *control.Session, or a fake in tests.
type edgeSide interface {
	Site() string
	ID() uint64
	RemoteAddr() net.Addr
	Offer(ctx context.Context, m *proto.FlowOffer) (*proto.OfferReply, error)
	CloseFlow(f session.Flow, reason proto.Code) error
}

// inboundOffers is the part that offers inbound flows to the edges: the
// packets held for each offer, the offers out, the refusals remembered,
// the unused ports of refused offers, and the inbound quotas and bounds.
// Its lock comes after the flows' (a flow's end frees its quota; a
// handshake looks at the packets held) and calls nothing of another
// part's; the gate needs no lock. Made by newInboundOffers, with the
// limits above.
type inboundOffers struct {
	m     *metrics.Counters
	ports *ports.Relay
	log   *slog.Logger
	gate  inboundGate // the inbound slow path's bounds passed before any lock (inboundgate.go)

	mu      sync.Mutex
	held    map[session.Flow][][]byte      // inbound flows' first packets, until their carrier binds
	done    map[session.Flow]chan struct{} // closed when a flow's held packets were released
	pending map[string]int                 // offers out, by site
	heldN   int                            // packets in held
	refused refusedCache
	spares  map[string][]spareLease // unused ports of refused offers, by site (spare.go)
	offers  ratelimit.Limiter       // new flows offered, by site and remote
	quota   quota                   // inbound flows by site and remote, from offer to end (inboundquota.go)

	// Tests only: lower limits, and sessions that are not control
	// sessions (by site; a live control session comes first), set
	// before the relay runs.
	maxPending, maxHeld int
	setup               time.Duration
	edges               map[string]edgeSide
}

func newInboundOffers(limits config.InboundBounds, p *ports.Relay, m *metrics.Counters, log *slog.Logger) *inboundOffers {
	return &inboundOffers{m: m, ports: p, log: log, quota: quota{limits: limits},
		held: map[session.Flow][][]byte{}, done: map[session.Flow]chan struct{}{}}
}

// forget stops counting f against the inbound quotas.
func (s *inboundOffers) forget(f session.Flow) {
	if s.quota.n.Load() == 0 {
		return // no inbound flow counted: a flood of outbound flows' ends pays no lock here
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quota.forget(f)
}

// unproven is the inbound flows the LAN host has not answered yet
// (quota.unproven).
func (s *inboundOffers) unproven() map[session.Flow]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quota.unproven()
}

// unanswered is quota.unanswered under the part's lock.
func (s *inboundOffers) unanswered(f session.Flow, udp, answered bool, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quota.unanswered(f, udp, answered, now)
}

func (s *inboundOffers) pendingCap() int          { return cmp.Or(s.maxPending, maxPendingPerSite) }
func (s *inboundOffers) heldCap() int             { return cmp.Or(s.maxHeld, maxHeldAll) }
func (s *inboundOffers) setupTime() time.Duration { return cmp.Or(s.setup, inboundSetup) }

// allowOffer takes one of remote's offers to site at now; peekOffer says
// whether it could, taking nothing (inboundgate.go, before any lock).
func (s *inboundOffers) allowOffer(site string, remote netip.Addr, now time.Time) bool {
	return s.offerLimit().Allow(site+" "+remoteKey(remote), now)
}

func (s *inboundOffers) peekOffer(site string, remote netip.Addr, now time.Time) bool {
	return s.offerLimit().Peek(site+" "+remoteKey(remote), now)
}

// offerLimit is the offer limiter, its rates set on first use (tests set
// their own first); only the miss loop's goroutine calls it.
func (s *inboundOffers) offerLimit() *ratelimit.Limiter {
	if s.offers.Rate == 0 {
		s.offers.Rate, s.offers.Burst = offerRate, offerBurst
	}
	return &s.offers
}

// remoteKey is what the offer limit counts a remote by: its /64, or its
// IPv4 address.
func remoteKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// held counts n packets more (or fewer) held; s.mu held.
func (s *inboundOffers) heldAdd(n int) { s.heldN = max(0, s.heldN+n) }

// takeSlot takes one of site's offer slots; false if none is free.
func (s *inboundOffers) takeSlot(site string) bool {
	if s.pending[site] >= s.pendingCap() {
		return false
	}
	if s.pending == nil {
		s.pending = map[string]int{}
	}
	s.pending[site]++
	return true
}

func (s *inboundOffers) freeSlot(site string) {
	if s.pending[site]--; s.pending[site] <= 0 {
		delete(s.pending, site)
	}
}

// inboundStatus is the relay's `inbound` status section.
type inboundStatus struct {
	Pending       map[string]int `json:"pending_offers_by_site"`
	PendingMax    int            `json:"pending_offers_max_per_site"`
	Held          int            `json:"held_packets"`
	HeldMax       int            `json:"held_packets_max"`
	Refused       int            `json:"refused_flows_remembered"`
	RefusedMax    int            `json:"refused_flows_max"`
	RefusedTTLSec int            `json:"refused_ttl_sec"`
	Spare         int            `json:"unused_ports_kept"`
	OfferRate     int            `json:"offers_per_sec_per_remote"`
	OfferBurst    int            `json:"offer_burst_per_remote"`
	OfferRemotes  int            `json:"offer_remotes_tracked"`
	// Inbound flows counted against inbound_limits (inboundquota.go).
	Flows         map[string]int `json:"inbound_flows_by_site"`
	FlowsMax      int            `json:"inbound_flows_max_per_site"`
	PerRemoteMax  int            `json:"inbound_flows_max_per_remote"`
	PortShare     int            `json:"inbound_port_share_percent"`
	UnansweredSec int            `json:"unanswered_udp_sec"`
}

func (c *agent) inboundStatus() any {
	s := c.inb
	s.mu.Lock()
	defer s.mu.Unlock()
	spare := 0
	for _, sp := range s.spares {
		spare += len(sp)
	}
	b := s.quota.bounds()
	return inboundStatus{Pending: maps.Clone(s.pending), PendingMax: s.pendingCap(), Held: s.heldN, HeldMax: s.heldCap(),
		Refused: s.refused.len(), RefusedMax: refusedMax, RefusedTTLSec: int(refusedTTL / time.Second), Spare: spare,
		OfferRate: offerRate, OfferBurst: offerBurst, OfferRemotes: s.offers.Names(),
		Flows: maps.Clone(s.quota.bySite), FlowsMax: b.PerSite, PerRemoteMax: b.PerRemote, PortShare: b.PortShare,
		UnansweredSec: int(b.Unanswered / time.Second)}
}

// offerDone frees an offer's slot when it ends, whatever its end.
func (c *agent) offerDone(site string) {
	c.inb.mu.Lock()
	c.inb.freeSlot(site)
	c.inb.mu.Unlock()
}

// rememberRefusal keeps a refusal that holds for a while (refused.go).
func (c *agent) rememberRefusal(f session.Flow, ss edgeSide, r *proto.OfferReply) {
	if r == nil || !refusedCodes[r.Result] {
		return
	}
	c.inb.mu.Lock()
	defer c.inb.mu.Unlock()
	if n := c.inb.refused.add(f, ss.ID(), r.Result, c.now()); n > 0 {
		c.m.Add(mInboundRefusedCacheFull, uint64(n))
	}
}
