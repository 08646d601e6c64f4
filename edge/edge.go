// Package edge is the agent on the site's router: it holds the control
// channel to the relay, keeps the site's authoritative flow table, answers
// the datapath's misses and applies the site's inbound policy.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/status"
	"github.com/unmap-dev/unmap/xdp/ifcheck"
)

// Options are what the command line gives the agent besides edge.yaml.
type Options struct {
	Version      string       // reported by `unmap status`
	StatusSocket string       // where `unmap status` asks; empty: no status socket
	Log          *slog.Logger // default slog.Default()
	// Drop, when set, lowers the agent's privileges. It is called once
	// the privileged set-up is done (datapath loaded, attached and
	// restored, sysctls written, raw sockets open) and before the agent
	// reads a packet or a message from the network.
	Drop func() error
}

// capabilities are what this edge supports.
const capabilities = proto.CapIPv4Public | proto.CapTCPOffer | proto.CapUDPCarrier | proto.CapCounters | proto.CapEdgeChoosesR | proto.CapRebind

// expiryCheckEvery is how often a running agent checks its certificate's
// expiry (pki.WatchExpiry).
const expiryCheckEvery = 6 * time.Hour

// Run runs the edge agent until ctx ends.
func Run(ctx context.Context, s *Settings, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	wan, err := ifaceIPv4(s.WAN)
	if err != nil {
		return fmt.Errorf("wan_interface: %w", err)
	}
	if err := enableForwarding(); err != nil {
		return err
	}
	// No local socket may take a carrier port: its packets would be
	// taken for a carrier's.
	if err := ports.Reserve(s.CarrierPorts); err != nil {
		return err
	}
	tf, err := s.loadTLS(time.Now())
	if err != nil {
		return err
	}
	cert, cas := tf.Cert, tf.CAs
	pki.LogExpiry(tf.ID.Cert, s.TLS.Cert, log, time.Now())
	if err := checkForwardsOnLAN(s.Forwards, s.LAN); err != nil {
		return err
	}
	a, err := newAgent(s, wan, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := &lan{ifname: s.LAN, log: log}
	defer l.leave()
	dp, err := openDatapath(s, wan, log.With("part", "xdp"))
	if err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	defer dp.close()
	// Routing changes reach the cached next hops at once (xdp/nexthop.go).
	rw, err := dp.XDP.WatchRoutes(ctx, log.With("part", "xdp"))
	if err != nil {
		log.Warn("no route watcher: cached next hops follow routing changes within their 50 ms", "err", err)
	}
	defer rw.Stop()
	// Veth setups that lose or corrupt XDP's frames silently: warn, with the fix.
	ifcheck.Warn(log.With("part", "xdp"), s.LAN, s.WAN)
	a.dp, a.activity, a.inject = dp, datapathActivity(dp, a.nat.lan), dp.Inj.Packet
	// Flows the last agent left forwarding come back before the first
	// session, so the client replays them to the relay.
	n, err := a.restore(dp)
	if err != nil {
		return fmt.Errorf("restore flows: %w", err)
	}
	if n > 0 {
		log.Info("flows restored from the pinned datapath", "flows", n, "pin_path", s.PinPath)
	}
	pm, err := openPortMapper(s, a, log)
	if err != nil {
		return fmt.Errorf("port_mapping: %w", err)
	}
	a.sess.onConnect(func(w *proto.Welcome) {
		a.setRelayPorts(w)
		if err := l.serve(ctx, w.Prefix); err != nil {
			log.Error("cannot serve the LAN", "err", err)
			return
		}
		if err := dp.XDP.AddLocal(lanPrefix(w.Prefix).Addr().Next()); err != nil {
			log.Error("datapath: the LAN address", "err", err)
		}
		// The LAN's IPv4 rides carriers to the site's public IPv4 when the
		// relay grants one, and takes the ordinary path otherwise.
		pp := ports.Range{First: w.PublicPorts.First, Last: w.PublicPorts.Last}
		if err := a.nat.grant(w.PublicIPv4, pp, s.Forwards); err != nil {
			log.Error("site IPv4", "err", err)
		} else if err := dp.XDP.SetLANv4ToAgent(w.PublicIPv4.IsValid()); err != nil {
			log.Error("datapath: the LAN's IPv4 switch", "err", err)
		}
		pm.granted(w.PublicIPv4)
	})
	client, err := control.NewClient(control.ClientConfig{
		Relay:      s.Relay,
		ServerName: s.ServerName,
		Identity:   cert,
		RelayCAs:   cas,
		Hello:      proto.Hello{Capabilities: capabilities, Site: s.Site, EdgeAddr: wan},
		Keepalive:  s.Keepalive,
		Handler:    a,
		Log:        log.With("part", "control"),
	})
	if err != nil {
		return err
	}
	a.ctl = client
	// Bound before the privileges go: an operator may pick a port < 1024.
	var mln net.Listener
	if s.MetricsListen != "" {
		if mln, err = metrics.Listen(s.MetricsListen); err != nil {
			return fmt.Errorf("metrics_listen: %w", err)
		}
		defer mln.Close()
	}
	if o.Drop != nil {
		if err := o.Drop(); err != nil {
			return err
		}
	}
	errc := make(chan error, 4)
	go a.expire(ctx)
	go pki.WatchExpiry(ctx, tf.ID.Cert, s.TLS.Cert, log, expiryCheckEvery, nil)
	go a.watchActivity(ctx)
	go a.keepCarriers(ctx, dp)
	go func() { errc <- a.misses(ctx, dp) }()
	if pm != nil {
		go func() { errc <- pm.serve(ctx) }()
	}

	if mln != nil {
		cs, err := a.collectors(client.Counters(), dp)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		if pm != nil {
			cs = append(cs, pm.collectors()...)
		}
		reg := metrics.NewRegistry(cs...)
		log.Info("metrics listening", "addr", mln.Addr())
		go func() {
			if err := metrics.Serve(ctx, mln, reg); err != nil {
				errc <- fmt.Errorf("metrics_listen: %w", err)
			}
		}()
	}
	if o.StatusSocket != "" {
		st := status.NewServer("edge", o.Version)
		st.Section("session", func() any { return sessionStatus(a.Grant()) })
		st.Section("control", func() any { return client.Counters().Snapshot() })
		st.Section("relay", func() any { return relayStatus(client.RelayCounters()) })
		st.Section("flows", func() any { return a.flows.Stats() })
		st.Section("inbound", func() any { return a.policy.Counts() })
		st.Section("ipv4", func() any { return a.nat.stats() })
		st.Section("slowpath", func() any { return a.Counts() })
		st.Section("datapath", func() any { return statusOrError(dp.XDP.ReasonCounts()) })
		st.Section("misses", func() any { return statusOrError(dp.XDP.MissStatus()) })
		if pm != nil {
			st.Section("portmap", pm.status)
		}
		go func() { errc <- st.Serve(ctx, o.StatusSocket) }()
	}
	go func() { errc <- client.Run(ctx) }()
	log.Info("edge running", "site", s.Site, "relay", s.Relay, "wan", wan)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// sessionStatus is the session section of `unmap status`.
func sessionStatus(w *proto.Welcome, up bool) any {
	if w == nil {
		return map[string]any{"connected": false}
	}
	return map[string]any{
		"connected": up, "session": w.SessionID, "prefix": w.Prefix.String(),
		"ipv4": w.PublicIPv4, "relay_addrs": w.RelayAddrs,
	}
}

// ifaceIPv4 is the first IPv4 address of an interface.
func ifaceIPv4(name string) (netip.Addr, error) {
	ps, err := ifacePrefixes4(name)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ps) == 0 {
		return netip.Addr{}, fmt.Errorf("%s has no IPv4 address", name)
	}
	return ps[0].Addr(), nil
}

// ifacePrefixes4 is an interface's IPv4 addresses with their prefix
// lengths.
func ifacePrefixes4(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, ok := netip.AddrFromSlice(n.IP)
			bits, _ := n.Mask.Size()
			if ok && ip.Unmap().Is4() {
				out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
			}
		}
	}
	return out, nil
}

// enableForwarding makes the host a router for both families, as the
// edge is the LAN's IPv6 router and its IPv4 gateway.
func enableForwarding() error {
	var errs []error
	for _, p := range []string{"/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv4/ip_forward"} {
		if err := os.WriteFile(p, []byte("1"), 0); err != nil {
			errs = append(errs, fmt.Errorf("enable forwarding: %w", err))
		}
	}
	return errors.Join(errs...)
}

// statusOrError is a status section that may have failed to read.
func statusOrError(v any, err error) any {
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return v
}
