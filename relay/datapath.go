package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/cgnat"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// datapath is the relay's XDP program on its external interface and the
// slow path for the packets it hands over.
type datapath struct {
	*slowpath.Datapath
	sites []netip.Prefix
	cg    *cgnat.Service // the CGNAT for subscribers, if configured
}

func openDatapath(s *Settings, log *slog.Logger) (*datapath, error) {
	cfg := xlat.Config{CarrierAddr: s.Addresses[0], PortLo: s.CarrierPorts.First, PortHi: s.CarrierPorts.Last}
	buckets := tableBuckets(s.Sites)
	// The edges replay the flows the pinned maps kept forwarding while
	// the agent was down, and the agent takes them back (pinned.go).
	opts := xdp.Options{PinPath: s.PinPath, Buckets: buckets, MissRate: s.Misses.Rate, MissBurst: s.Misses.Burst}
	if s.CGNAT != nil {
		opts.CGNAT, opts.CGNATMappings = s.CGNAT.Datapath, s.CGNAT.MaxMappings
	}
	sp, err := slowpath.Open(cfg, opts, log)
	if errors.Is(err, xdp.ErrPinIncompatible) {
		log.Debug("pinned maps refused", "err", err)
		why := err
		if ie := (*xdp.IncompatibleError)(nil); errors.As(err, &ie) {
			why = ie.Why // the maps refused and what they hold
		}
		return nil, fmt.Errorf("%w in %s (%v): stop the relay and remove them with `unmap relay --unpin` (or rm -r %s), which ends the flows they carry", xdp.ErrPinIncompatible, s.PinPath, why, s.PinPath)
	}
	if err != nil {
		return nil, err
	}
	log.Info("flow table", "buckets", buckets, "flows_half_full", buckets, "MiB", buckets*xdp.BucketBytes>>20)
	dp := &datapath{Datapath: sp}
	fail := func(err error) (*datapath, error) { return nil, errors.Join(err, dp.Close()) }
	for _, site := range s.Sites {
		dp.sites = append(dp.sites, site.Prefix)
		if site.IPv4.IsValid() {
			dp.sites = append(dp.sites, netip.PrefixFrom(site.IPv4, 32))
		}
	}
	// The pinned map may hold sites an earlier relay.yaml had.
	if err := sp.XDP.SetSitePrefixes(dp.sites); err != nil {
		return fail(err)
	}
	// Its own addresses: no packet from the Internet comes from them.
	if err := sp.XDP.SetLocal(s.Addresses); err != nil {
		return fail(err)
	}
	if _, err := sp.Attach(s.Interface, xlat.RoleRelayExt, s.PinPath); err != nil {
		return fail(err)
	}
	// Carriers toward the sites leave the program with the relay's
	// address as their source (slowpath.AcceptLocal).
	if err := slowpath.AcceptLocal(s.Interface); err != nil {
		return fail(err)
	}
	// What the program passes to the kernel for a site must end here
	// (routes.go).
	h, err := netlink.NewHandle()
	if err != nil {
		return fail(fmt.Errorf("routes: %w", err))
	}
	defer h.Close()
	if err := syncRoutes(h, siteRoutes(s.Sites), log); err != nil {
		return fail(err)
	}
	if s.CGNAT != nil {
		if dp.cg, err = cgnat.Start(s.CGNAT, sp, s.PinPath, s.Interface, log.With("part", "cgnat")); err != nil {
			return fail(fmt.Errorf("cgnat: %w", err))
		}
	}
	return dp, nil
}

// maxTableBuckets bounds the flow table the sites' quotas can ask for:
// 2^18 buckets, 98 MiB, half full with 262144 flows.
const maxTableBuckets = 1 << 18

// tableBuckets sizes the flow table for the sites' quotas: a flow is two
// keys, and a table half full of them almost never spills a key, so
// each flow of quota gets one bucket (four ways), rounded up to a power
// of two, between xdp.DefaultBuckets and maxTableBuckets. Quotas are
// ceilings a relay rarely meets all at once: past the bound, keys spill
// into the hashes and then are refused.
func tableBuckets(sites []Site) uint32 {
	sum := 0
	for _, site := range sites {
		sum += site.MaxFlows
	}
	n := uint32(xdp.DefaultBuckets)
	for int(n) < sum && n < maxTableBuckets {
		n <<= 1
	}
	return n
}

func (dp *datapath) close() error {
	if dp.cg != nil {
		return errors.Join(dp.cg.Close(), dp.Close())
	}
	return dp.Close()
}

// mapFlow installs both directions of a bound carrier.
func (dp *datapath) mapFlow(f session.Flow, c session.Carrier) error {
	out, back, err := xdp.RelayPair(f, c)
	if err != nil {
		return err
	}
	return dp.XDP.PutPair(out, back)
}

// mapHalf installs one of a bound carrier's entries: the carrier-to-remote
// one (toRemote), or the remote-to-carrier one.
func (dp *datapath) mapHalf(f session.Flow, c session.Carrier, toRemote bool) error {
	out, back, err := xdp.RelayPair(f, c)
	if err != nil {
		return err
	}
	if toRemote {
		return dp.XDP.Put(out.Key, out.Entry)
	}
	return dp.XDP.Put(back.Key, back.Entry)
}

// unmap removes a flow's entries.
func (dp *datapath) unmap(f session.Flow, c session.Carrier) {
	if out, back, err := xdp.RelayPair(f, c); err == nil {
		_ = dp.XDP.Delete(out.Key)
		_ = dp.XDP.Delete(back.Key)
	}
}

// sitesTable classifies misses as the relay program did: no entries, and
// the sites' prefixes.
type sitesTable []netip.Prefix

func (sitesTable) Lookup(xlat.Key) (xlat.Entry, bool) { return xlat.Entry{}, false }
func (sitesTable) IsLocal(netip.Addr) bool            { return false }
func (t sitesTable) InSite(a netip.Addr) bool {
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// misses serves the datapath's misses until ctx ends: carrier packets
// that bind their carrier, inbound flows to the sites, and ICMP errors.
func (c *agent) misses(ctx context.Context, dp *datapath) error {
	if dp.cg != nil {
		go dp.cg.Run(ctx) // block events, the expiry sweep, the log's SIGHUP
	}
	return dp.ServeMisses(ctx, func(m xdp.Miss) {
		if m.Role == xlat.RoleRelaySub && dp.cg != nil {
			dp.cg.Miss(m) // a subscriber with no free port: cgnat-no-block
			return
		}
		c.miss(ctx, dp, m)
	})
}

// miss handles one packet the datapath handed over.
func (c *agent) miss(ctx context.Context, dp *datapath, m xdp.Miss) {
	if k, ok := xlat.ErrorKey(m.Data); ok && k.Src.Is6() {
		c.relayICMPError(k, m) // from a router beyond the relay
		return
	}
	res := xlat.Process(xlat.RoleRelayExt, &dp.Cfg, sitesTable(dp.sites), nil, m.Data)
	k := res.Key
	if res.Reason != xlat.ReasonMiss {
		c.m.Inc(mMissUnusable)
		return
	}
	if k.Dst != dp.Cfg.CarrierAddr {
		if m.Len != len(m.Data) {
			c.m.Inc(mInboundTruncated) // cannot be held whole
			return
		}
		c.inbound(ctx, k, m.Data)
		return
	}
	c.carrierPacket(k, m.Data, m.Len == len(m.Data))
}

// send translates packets of a flow held by the slow path with the flow's
// entries, as the program now would, and sends them on, counting the
// ones lost in m.
func (dp *datapath) send(f session.Flow, c session.Carrier, frames [][]byte, m *metrics.Counters) {
	if len(frames) == 0 {
		return
	}
	if out, back, err := xdp.RelayPair(f, c); err == nil {
		dp.SendHeld(xlat.RoleRelayExt, out, back, frames, m, heldCounters)
	}
}
