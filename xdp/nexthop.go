package xdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The programs cache IPv4 and IPv6 next hops (bpf/nhcache.h): an entry
// is fresh while its generation is sw_nh_gen and it is younger than
// NextHopTTL.
// BumpRoutes makes every entry stale; a RouteWatcher calls it on each
// rtnetlink message of the agent's namespace that can change a lookup's
// answer (all but a neighbour's moves between valid states with its MAC
// unchanged: neighbours.go), so a change applies to the next packet.
// Without a watcher (a pinned program between agents, a failed
// subscription, a lost message) the expiry bounds the staleness.

// NextHopTTL is how long a cached next hop is used without a bump.
const NextHopTTL = 50 * time.Millisecond

// nextHops is the Go side of the cache's generation.
type nextHops struct {
	mu     sync.Mutex // serializes bumps: the generation never goes back
	bumps  atomic.Uint64
	errors atomic.Uint64 // failed bumps, subscriptions and receives
}

// nhTTL is NextHopTTL in jiffies, the unit of bpf_jiffies64: the
// coarse clock's resolution is one jiffy (CONFIG_HZ). 0 turns the cache
// off.
func nhTTL(opts Options) (uint64, error) {
	if opts.NoNextHopCache {
		return 0, nil
	}
	var ts unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_REALTIME_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("jiffy length: %w", err)
	}
	tick := ts.Nano()
	if tick <= 0 || tick > int64(time.Second) {
		return 0, fmt.Errorf("jiffy length: coarse clock resolution %d ns", tick)
	}
	return uint64((int64(NextHopTTL) + tick - 1) / tick), nil
}

// BumpRoutes makes every cached next hop stale: the next packet of each
// takes the real FIB lookup.
func (d *Datapath) BumpRoutes() error {
	d.nh.mu.Lock()
	defer d.nh.mu.Unlock()
	var g uint32
	err := d.objs.SwNhGen.Get(&g)
	if err == nil {
		g++
		if g == 0 {
			g = 1 // a zeroed slot's generation
		}
		err = d.objs.SwNhGen.Set(g)
	}
	if err != nil {
		d.nh.errors.Add(1)
		return fmt.Errorf("next-hop generation: %w", err)
	}
	d.nh.bumps.Add(1)
	return nil
}

// RouteStats are the next-hop cache's counters since the load.
type RouteStats struct {
	Bumps       uint64 // BumpRoutes calls that made the cache stale
	WatchErrors uint64 // failed subscriptions, receives (lost messages included) and bumps
}

// RouteStats reads the next-hop cache's counters.
func (d *Datapath) RouteStats() RouteStats {
	return RouteStats{Bumps: d.nh.bumps.Load(), WatchErrors: d.nh.errors.Load()}
}

// routeGroups are the rtnetlink groups whose messages can change what
// bpf_fib_lookup answers: routes and rules (IPv4 for the cache, IPv6
// too, cheap and ready should the cache cover it), neighbours (the
// MACs), links (up, down, MTU, MAC), addresses (connected routes),
// nexthop objects (routes that use one get no message of their own) and
// netconf (forwarding switched off makes the lookup refuse).
var routeGroups = []uint{
	unix.RTNLGRP_LINK, unix.RTNLGRP_NEIGH,
	unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV4_NETCONF,
	unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV6_ROUTE, unix.RTNLGRP_IPV6_RULE, unix.RTNLGRP_IPV6_NETCONF,
	unix.RTNLGRP_NEXTHOP,
}

// Bounds of the wait after a receive error other than a lost message,
// doubling from the first to the last while errors follow each other.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// RouteWatcher bumps the next-hop cache on routing changes until its
// context ends or Stop.
type RouteWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// WatchRoutes subscribes to rtnetlink in the calling thread's network
// namespace and bumps the cache on every message received that can
// change a lookup's answer (once a batch: one bump covers all its
// messages) until ctx ends. A failed subscription is returned (and
// counted): the caller logs it, and the expiry still bounds staleness.
func (d *Datapath) WatchRoutes(ctx context.Context, log *slog.Logger) (*RouteWatcher, error) {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, routeGroups...)
	if err != nil {
		d.nh.errors.Add(1)
		return nil, fmt.Errorf("route watcher: subscribe: %w", err)
	}
	// Whatever changed before the subscription went unseen.
	if err := d.BumpRoutes(); err != nil {
		log.Warn("route watcher", "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &RouteWatcher{cancel: cancel, done: make(chan struct{})}
	recv := make(chan struct{})
	go func() {
		defer close(recv)
		d.receiveRoutes(ctx, s, log)
	}()
	go func() {
		defer close(w.done)
		<-ctx.Done()
		s.Close() // ends the pending Receive
		<-recv
	}()
	return w, nil
}

// Stop ends the watcher and waits for its goroutines; a nil watcher
// (whose subscription failed) has none.
func (w *RouteWatcher) Stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

// receiveRoutes bumps the cache on each batch of messages from s until
// ctx ends (and s is closed).
func (d *Datapath) receiveRoutes(ctx context.Context, s *nl.NetlinkSocket, log *slog.Logger) {
	var backoff time.Duration
	ns := neighbours{}
	for {
		msgs, _, err := s.Receive()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 0
			if ns.anyStale(msgs) {
				if err := d.BumpRoutes(); err != nil {
					log.Warn("route watcher", "err", err)
				}
			}
			continue
		}
		// A lost message (ENOBUFS: the socket overran) or a failing
		// socket: what changed is unknown, so all is stale, and what
		// the watcher knew of the neighbours may be too.
		d.nh.errors.Add(1)
		clear(ns)
		if err := d.BumpRoutes(); err != nil {
			log.Warn("route watcher", "err", err)
		}
		if errors.Is(err, unix.ENOBUFS) {
			log.Warn("route watcher: messages lost, next-hop cache flushed", "err", err)
			continue
		}
		backoff = min(max(2*backoff, watchBackoffMin), watchBackoffMax)
		log.Warn("route watcher: receive failed", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
