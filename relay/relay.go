// Package relay is the agent on the Internet server: it accepts edges on
// the control channel, grants them prefixes, addresses and carriers, and
// offers inbound flows to the edge that owns them.
package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/control/admin"
	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// Options are what the command line gives the agent besides relay.yaml.
type Options struct {
	Version      string       // reported by `unmap status`
	StatusSocket string       // where `unmap status` asks; empty: no status socket
	Log          *slog.Logger // default slog.Default()
}

// keepalive is what the relay asks edges for: below a CGNAT's 30 s UDP
// timeout with room for a lost packet.
const keepalive = 15 * time.Second

// Run runs the relay agent until ctx ends.
func Run(ctx context.Context, s *Settings, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	_, cert, err := pki.LoadIdentity(s.TLS.Cert, s.TLS.Key)
	if err != nil {
		return fmt.Errorf("tls.cert/tls.key: %w", err)
	}
	cas, err := pki.LoadPool(s.TLS.CA)
	if err != nil {
		return fmt.Errorf("tls.ca: %w", err)
	}
	c, err := newCarriers(s, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Close, not ctx, ends the server: it says Goodbye to every edge so
	// they reconnect at once to the relay's successor.
	srv, err := control.Listen(context.WithoutCancel(ctx), control.ServerConfig{
		Addr:      s.Listen.String(),
		Identity:  cert,
		ClientCAs: cas,
		Authorize: func(site string, _ *proto.Hello) (*proto.Welcome, error) { return s.grant(site, keepalive) },
		Handler:   c,
		Log:       log.With("part", "control"),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("relay listening", "addr", srv.Addr(), "sites", len(s.Sites))

	errc := make(chan error, 1)
	if o.StatusSocket != "" {
		st := admin.NewServer("relay", o.Version)
		st.Section("control", func() any { return srv.Counters().Snapshot() })
		st.Section("carriers", c.status)
		go func() { errc <- st.Serve(ctx, o.StatusSocket) }()
	}
	select {
	case <-ctx.Done():
		log.Info("relay stopping")
		return nil
	case err := <-errc:
		return fmt.Errorf("status socket: %w", err)
	}
}
