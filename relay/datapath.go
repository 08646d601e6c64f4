package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/xdp"
)

// datapath is the relay's XDP program on its external interface and the
// slow path for the packets it hands over.
type datapath struct {
	d     *xdp.Datapath
	cfg   xlat.Config
	sites []netip.Prefix
	inj   *xdp.Injector
	link  link.Link
	log   *slog.Logger
}

func openDatapath(s *Settings, log *slog.Logger) (*datapath, error) {
	cfg := xlat.Config{CarrierAddr: s.Addresses[0], PortLo: s.CarrierPorts.First, PortHi: s.CarrierPorts.Last}
	buckets := tableBuckets(s.Sites)
	// Maps and link are pinned: the program goes on forwarding the sites'
	// flows while the agent is down, and the next agent takes them back
	// as the edges replay them (pinned.go).
	d, err := xdp.Load(cfg, xdp.Options{PinPath: s.PinPath, Buckets: buckets, MissRate: s.Misses.Rate, MissBurst: s.Misses.Burst})
	if errors.Is(err, xdp.ErrPinIncompatible) {
		log.Debug("pinned maps refused", "err", err)
		return nil, fmt.Errorf("%w in %s: stop the relay and remove them with `unmap relay --unpin` (or rm -r %s), which ends the flows they carry", xdp.ErrPinIncompatible, s.PinPath, s.PinPath)
	}
	if err != nil {
		return nil, err
	}
	log.Info("flow table", "buckets", buckets, "flows_half_full", buckets, "MiB", buckets*xdp.BucketBytes>>20)
	dp := &datapath{d: d, cfg: cfg, log: log}
	fail := func(err error) (*datapath, error) { return nil, errors.Join(err, dp.close()) }
	for _, site := range s.Sites {
		dp.sites = append(dp.sites, site.Prefix)
		if site.IPv4.IsValid() {
			dp.sites = append(dp.sites, netip.PrefixFrom(site.IPv4, 32))
		}
	}
	// The pinned map may hold sites an earlier relay.yaml had.
	if err := d.SetSitePrefixes(dp.sites); err != nil {
		return fail(err)
	}
	if dp.inj, err = xdp.NewInjector(); err != nil {
		return fail(err)
	}
	ifi, err := net.InterfaceByName(s.Interface)
	if err != nil {
		return fail(fmt.Errorf("interface: %w", err))
	}
	l, mode, err := d.AttachPinned(ifi.Index, xlat.RoleRelayExt, filepath.Join(s.PinPath, "link-"+xlat.RoleRelayExt.String()))
	if err != nil {
		return fail(err)
	}
	dp.link = l
	log.Info("XDP attached", "if", s.Interface, "mode", mode)
	// Carriers toward the sites leave the program with the relay's
	// address as their source. When it passes one to the stack (no
	// neighbour entry for the next hop yet, `pass-no-neigh`), the kernel
	// sees a packet come in from outside with one of its own addresses as
	// the source: a martian, dropped unless accept_local is set on the
	// interface (test/e2e TestCarriersPassedBeforeNeighbour).
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+s.Interface+"/accept_local", []byte("1"), 0); err != nil {
		return fail(fmt.Errorf("accept_local: %w", err))
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
	var errs []error
	if dp.link != nil {
		errs = append(errs, dp.link.Close())
	}
	if dp.inj != nil {
		errs = append(errs, dp.inj.Close())
	}
	return errors.Join(append(errs, dp.d.Close())...)
}

// mapFlow installs both directions of a bound carrier.
func (dp *datapath) mapFlow(f session.Flow, c session.Carrier) error {
	out, back, err := xdp.RelayPair(f, c)
	if err != nil {
		return err
	}
	return dp.d.PutPair(out, back)
}

// mapHalf installs one of a bound carrier's entries: the carrier-to-remote
// one (toRemote), or the remote-to-carrier one.
func (dp *datapath) mapHalf(f session.Flow, c session.Carrier, toRemote bool) error {
	out, back, err := xdp.RelayPair(f, c)
	if err != nil {
		return err
	}
	if toRemote {
		return dp.d.Put(out.Key, out.Entry)
	}
	return dp.d.Put(back.Key, back.Entry)
}

// unmap removes a flow's entries.
func (dp *datapath) unmap(f session.Flow, c session.Carrier) {
	if out, back, err := xdp.RelayPair(f, c); err == nil {
		_ = dp.d.Delete(out.Key)
		_ = dp.d.Delete(back.Key)
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
// that bind their carrier, and (not yet) inbound flows to the sites.
func (c *carriers) misses(ctx context.Context, dp *datapath) error {
	r, err := dp.d.Misses()
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); r.Close() }()
	for {
		m, err := r.Read()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("misses: %w", err)
		}
		if k, ok := xlat.ErrorKey(m.Data); ok && k.Src.Is6() {
			c.relayICMPError(k, m) // from a router beyond the relay
			continue
		}
		res := xlat.Process(xlat.RoleRelayExt, &dp.cfg, sitesTable(dp.sites), nil, m.Data)
		k := res.Key
		if res.Reason != xlat.ReasonMiss {
			c.m.Inc(mMissUnusable)
			continue
		}
		if k.Dst != dp.cfg.CarrierAddr {
			if m.Len != len(m.Data) {
				c.m.Inc(mInboundTruncated) // cannot be held whole
				continue
			}
			c.inbound(ctx, k, m.Data)
			continue
		}
		c.carrierPacket(k, m.Data, m.Len == len(m.Data))
	}
}

// send translates packets of a flow held by the slow path with the flow's
// entries, as the program now would, and sends them on.
func (dp *datapath) send(f session.Flow, c session.Carrier, frames [][]byte, count func(string)) {
	if len(frames) == 0 {
		return
	}
	out, back, err := xdp.RelayPair(f, c)
	if err != nil {
		return
	}
	for _, fr := range frames {
		res := xlat.Process(xlat.RoleRelayExt, &dp.cfg, xdp.Pair{out, back}, nil, fr)
		if !res.Hit {
			count("held-untranslated")
			continue
		}
		if err := dp.inj.Frame(res.Out); err != nil {
			count("held-inject-failed")
		}
	}
}

// count records a slow-path event under a declared name (metrics.go).
func (c *carriers) count(name string) { c.m.IncName(name) }
