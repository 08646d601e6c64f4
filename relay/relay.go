// Package relay is the agent on the Internet server: it accepts edges on
// the control channel, grants them prefixes, addresses and carriers, and
// offers inbound flows to the edge that owns them.
package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/status"
	"github.com/unmap-dev/unmap/xdp/ifcheck"
)

// Options are what the command line gives the agent besides relay.yaml.
type Options struct {
	Version      string       // reported by `unmap status`
	StatusSocket string       // where `unmap status` asks; empty: no status socket
	Log          *slog.Logger // default slog.Default()
	// ControlOnly runs the control channel without loading XDP: for tests
	// that must not touch the interfaces of the namespace they run in.
	ControlOnly bool
	// Drop, when set, lowers the agent's privileges. It is called once
	// everything privileged is done (datapath loaded and attached, routes
	// and sysctls written, raw sockets and the control socket open) and
	// before the agent reads a packet or a handshake from the network.
	Drop func() error
}

// keepalive is what the relay asks edges for: below a CGNAT's 30 s UDP
// timeout with room for a lost packet.
const keepalive = 15 * time.Second

// expiryCheckEvery is how often a running agent checks its certificate's
// expiry (pki.WatchExpiry).
const expiryCheckEvery = 6 * time.Hour

// Run runs the relay agent until ctx ends.
func Run(ctx context.Context, s *Settings, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	tf, err := s.loadTLS(time.Now())
	if err != nil {
		return err
	}
	pki.LogExpiry(tf.ID.Cert, s.TLS.Cert, log, time.Now())
	c, err := newAgent(s, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	if !o.ControlOnly {
		// No local socket may take a carrier port: the datapath would
		// take its packets for a carrier's.
		if err := ports.Reserve(s.CarrierPorts); err != nil {
			return err
		}
		dp, err := openDatapath(s, log.With("part", "xdp"))
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
		ifs := []string{s.Interface}
		if s.CGNAT != nil {
			ifs = append(ifs, s.CGNAT.Interface) // relay_sub's
			ifs = append(ifs, s.CGNAT.MoreInterfaces...)
		}
		ifcheck.Warn(log.With("part", "xdp"), ifs...)
		c.dp, c.activity = dp, datapathActivity(dp)
		// Before any session: the edges' replays take these back.
		ms, err := dp.XDP.Mappings()
		if err != nil {
			return fmt.Errorf("pinned flows: %w", err)
		}
		n := c.takePinned(ms, s.Addresses)
		log.Info("pinned flows", "waiting_for_replay", n, "grace", pinnedGrace)
	}
	pc, err := listenControl(s.Listen)
	if err != nil {
		return err
	}
	defer pc.Close()
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
	if c.dp != nil {
		go func() { errc <- c.misses(ctx, c.dp) }()
	}
	go c.expire(ctx)
	// Close, not ctx, ends the server: it says Goodbye to every edge so
	// they reconnect at once to the relay's successor.
	go pki.WatchExpiry(ctx, tf.ID.Cert, s.TLS.Cert, log, expiryCheckEvery, nil)
	cfg, err := serverConfig(s, tf.ID, tf.Cert, tf.CAs, c, log.With("part", "control"))
	if err != nil {
		return err
	}
	cfg.PacketConn = pc // bound before the privileges were dropped
	srv, err := control.Listen(context.WithoutCancel(ctx), cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("relay listening", "addr", srv.Addr(), "sites", len(s.Sites))

	if mln != nil {
		cs, err := c.collectors(s, srv.Counters())
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
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
		st := status.NewServer("relay", o.Version)
		st.Section("control", func() any { return srv.Counters().Snapshot() })
		st.Section("carriers", c.status)
		st.Section("inbound", c.inboundStatus)
		if c.dp != nil {
			st.Section("datapath", func() any {
				m, err := c.dp.XDP.ReasonCounts()
				if err != nil {
					return map[string]string{"error": err.Error()}
				}
				return m
			})
			if c.dp.cg != nil {
				st.Section("cgnat", c.dp.cg.Status) // the CGNAT agent's counts
				if c.dp.cg.PM != nil {
					st.Section("portmap", c.dp.cg.PM.Status) // the subscribers' port mappings
				}
			}
			st.Section("misses", func() any {
				m, err := c.dp.XDP.MissStatus()
				if err != nil {
					return map[string]string{"error": err.Error()}
				}
				return m
			})
		}
		go func() {
			if err := st.Serve(ctx, o.StatusSocket); err != nil {
				errc <- fmt.Errorf("status socket: %w", err)
			}
		}()
	}
	select {
	case <-ctx.Done():
		log.Info("relay stopping")
		return nil
	case err := <-errc:
		return err
	}
}
