package portmap

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/portmap/pcp"
	"github.com/unmap-dev/unmap/portmap/upnp"
	"github.com/unmap-dev/unmap/ratelimit"
)

// Config says where and what the server serves.
type Config struct {
	Interface string // the LAN interface: the only one served
	PCP       bool   // PCP on UDP 5351
	NATPMP    bool   // NAT-PMP on UDP 5351
	UPnP      bool   // SSDP on UDP 1900 and SOAP over HTTP on HTTPPort
	HTTPPort  uint16 // the UPnP description and control port; default DefaultHTTPPort
	Name      string // the UPnP friendly name and the seed of its UUIDs
	// OutboundTimeout is how long an idle outbound flow of proto lives
	// (UPnP GetOutboundPinholeTimeout); nil: DefaultOutboundTimeout.
	OutboundTimeout func(Proto) time.Duration
	Log             *slog.Logger
}

// Defaults.
const (
	DefaultHTTPPort        = 5000
	DefaultOutboundTimeout = 5 * time.Minute
)

// Requests one LAN address may make, all protocols together: a client
// asks for a few mappings and renews them at half their lifetime; a
// burst covers a UPnP client's discovery and calls. Over it a request
// is dropped unanswered (counted rate-limited), so a host cannot flood
// the agent's log with grants and releases or reflect SSDP answers.
const (
	sourceRate  = 20  // a second
	sourceBurst = 100 // at once
)

// Server serves the enabled protocols on the LAN interface from one
// Table. Listen opens every socket (call it inside the namespace the
// server serves); Serve then runs until its context ends.
type Server struct {
	cfg        Config
	t          *Table
	log        *slog.Logger
	dev1, dev2 upnp.Device

	udp4, udp6 *net.UDPConn // PCP and NAT-PMP, port 5351
	ssdp       *net.UDPConn
	http       []net.Listener
	ifi        *net.Interface
	lan4       []netip.Prefix // the LAN interface's IPv4 addresses, read by Listen
	limit      *ratelimit.Limiter
}

// NewServer makes a server of t's mappings.
func NewServer(cfg Config, t *Table) *Server {
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = DefaultHTTPPort
	}
	if cfg.OutboundTimeout == nil {
		cfg.OutboundTimeout = func(Proto) time.Duration { return DefaultOutboundTimeout }
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = "unmap"
	}
	return &Server{cfg: cfg, t: t, log: cfg.Log, limit: &ratelimit.Limiter{Rate: sourceRate, Burst: sourceBurst},
		dev1: upnp.Device{Version: 1, UUID: deviceUUID(cfg.Name, 1)},
		dev2: upnp.Device{Version: 2, UUID: deviceUUID(cfg.Name, 2)}}
}

// deviceUUID is a stable UUID per name and IGD version, so control
// points that remember a device find it again after a restart.
func deviceUUID(name string, v int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "unmap portmap %s igd%d", name, v))
	h[6] = h[6]&0x0f | 0x50 // version 5 style, name-based
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Table is the server's mapping table.
func (s *Server) Table() *Table { return s.t }

// Listen opens the sockets of the enabled protocols, each bound to the
// LAN interface: the kernel delivers no packet that came in on another
// interface to them, whatever its destination address.
func (s *Server) Listen() (err error) {
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if s.ifi, err = net.InterfaceByName(s.cfg.Interface); err != nil {
		return err
	}
	// Read now: Listen runs in the server's namespace, later calls
	// may not (a test serves a lab namespace from its own process).
	if s.lan4, err = ifacePrefixes4(s.ifi); err != nil {
		return err
	}
	lc := net.ListenConfig{Control: bindToDevice(s.cfg.Interface)}
	ctx := context.Background()
	if s.cfg.PCP || s.cfg.NATPMP {
		c, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", pcp.ServerPort))
		if err != nil {
			return fmt.Errorf("pcp/nat-pmp: %w", err)
		}
		s.udp4 = c.(*net.UDPConn)
		if err := multicastIf4(s.udp4, s.ifi); err != nil {
			return err
		}
		if s.cfg.PCP {
			// IPv6 only matters to PCP; a LAN without IPv6 has none.
			if c, err := lc.ListenPacket(ctx, "udp6", fmt.Sprintf("[::]:%d", pcp.ServerPort)); err == nil {
				s.udp6 = c.(*net.UDPConn)
				_ = multicastIf6(s.udp6, s.ifi)
			} else {
				s.log.Warn("pcp: no IPv6 socket", "err", err)
			}
		}
	}
	if s.cfg.UPnP {
		lcr := net.ListenConfig{Control: reuseAndBind(s.cfg.Interface)}
		c, err := lcr.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", upnp.SSDPPort))
		if err != nil {
			return fmt.Errorf("ssdp: %w", err)
		}
		s.ssdp = c.(*net.UDPConn)
		if err := joinGroup4(s.ssdp, s.ifi, netip.MustParseAddr(upnp.SSDPGroup4)); err != nil {
			return fmt.Errorf("ssdp: join %s on %s: %w", upnp.SSDPGroup4, s.cfg.Interface, err)
		}
		for _, network := range []string{"tcp4", "tcp6"} {
			l, err := lc.Listen(ctx, network, fmt.Sprintf(":%d", s.cfg.HTTPPort))
			if err != nil {
				if network == "tcp6" {
					s.log.Warn("upnp: no IPv6 control socket (IGDv2 pinholes are asked over IPv6)", "err", err)
					continue
				}
				return fmt.Errorf("upnp http: %w", err)
			}
			s.http = append(s.http, limitListener(l, maxHTTPConns))
		}
	}
	return nil
}

func (s *Server) closeAll() {
	for _, c := range []*net.UDPConn{s.udp4, s.udp6, s.ssdp} {
		if c != nil {
			c.Close()
		}
	}
	for _, l := range s.http {
		l.Close()
	}
}

// Serve answers requests until ctx ends, expires mappings, and first
// announces the server's new epoch (PCP's unsolicited ANNOUNCE, RFC 6887
// §14.1.1, and NAT-PMP's address announcement, RFC 6886 §3.2.1), so the
// LAN's clients re-create the mappings a previous run held.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	for _, c := range []*net.UDPConn{s.udp4, s.udp6} {
		if c != nil {
			run(func() error { return s.serveUDP(c, pcp.MaxSize, s.HandleUDP) })
		}
	}
	if s.ssdp != nil {
		run(func() error { return s.serveSSDP(s.ssdp) })
	}
	var hs []*http.Server
	for _, l := range s.http {
		h := s.httpServer()
		hs = append(hs, h)
		run(func() error {
			if err := h.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	run(func() error { s.expire(ctx); return nil })
	run(func() error { s.announceLoop(ctx); return nil })
	s.log.Info("port mapping served", "interface", s.cfg.Interface, "pcp", s.cfg.PCP, "nat-pmp", s.cfg.NATPMP, "upnp", s.cfg.UPnP)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	for _, h := range hs {
		h.Close()
	}
	s.closeAll()
	wg.Wait()
	return err
}

// serveUDP reads requests of at most limit bytes and sends handle's
// answer back to their source.
func (s *Server) serveUDP(c *net.UDPConn, limit int, handle func([]byte, netip.AddrPort, time.Time) []byte) error {
	buf := make([]byte, limit+1)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if n > limit {
			s.t.Refused(Oversize)
			continue
		}
		if !s.admit(src.Addr(), time.Now()) {
			continue
		}
		if out := handle(buf[:n], src, time.Now()); out != nil {
			if _, err := c.WriteToUDPAddrPort(out, src); err != nil {
				s.log.Debug("port mapping answer not sent", "to", src, "err", err)
			}
		}
	}
}

// admit takes a token from the source's bucket; refused requests are
// counted.
func (s *Server) admit(src netip.Addr, now time.Time) bool {
	if s.limit.Allow(src.Unmap().String(), now) {
		return true
	}
	s.t.Refused(RateLimited)
	return false
}

// HandleUDP answers one request to port 5351: NAT-PMP (version 0) or PCP
// (any other), nil for no answer.
func (s *Server) HandleUDP(b []byte, src netip.AddrPort, now time.Time) []byte {
	if len(b) < 2 {
		s.t.Refused(Malformed)
		return nil
	}
	if b[0] == 0 {
		if !s.cfg.NATPMP {
			if s.cfg.PCP {
				// A PCP server without NAT-PMP says so (RFC 6887 §9).
				s.t.Refused(UnsupportedVersion)
				return pcp.ErrorResponse(b, pcp.UnsuppVersion, longError, s.t.Epoch(now))
			}
			s.t.Refused(Disabled)
			return nil
		}
		return s.natpmp(b, src, now)
	}
	if !s.cfg.PCP {
		s.t.Refused(Disabled)
		if s.cfg.NATPMP && b[1]&0x80 == 0 {
			// A PCP client falls back to NAT-PMP on this answer.
			return natpmpUnsupportedVersion(b[1], s.t.Epoch(now))
		}
		return nil
	}
	return s.pcp(b, src, now)
}

// expire removes ended mappings once a second.
func (s *Server) expire(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.t.Expire(now)
		}
	}
}

// announceLoop sends the epoch announcement ten times, 250 ms apart at
// first and doubling (RFC 6886 §3.2.1's schedule; RFC 6887 §14.1.1 asks
// for several), so one lost datagram does not leave clients unaware.
func (s *Server) announceLoop(ctx context.Context) {
	wait := 250 * time.Millisecond
	for range 10 {
		s.Announce()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// Announce multicasts the server's epoch to the LAN's all-hosts groups:
// a PCP ANNOUNCE response, and NAT-PMP's external address when there is
// one. Call it again when the external address changes.
func (s *Server) Announce() {
	now := time.Now()
	epoch := s.t.Epoch(now)
	if s.cfg.PCP {
		a := (&pcp.Message{Response: true, Opcode: pcp.OpAnnounce, Epoch: epoch}).Append(nil)
		if s.udp4 != nil {
			_, _ = s.udp4.WriteToUDPAddrPort(a, netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 1}), pcp.ClientPort))
		}
		if s.udp6 != nil {
			_, _ = s.udp6.WriteToUDPAddrPort(a, netip.AddrPortFrom(netip.MustParseAddr("ff02::1").WithZone(strconv.Itoa(s.ifi.Index)), pcp.ClientPort))
		}
	}
	if s.t.pc != nil {
		s.announceClients(epoch)
		return // each client's external address is its own: none multicast
	}
	if s.cfg.NATPMP && s.udp4 != nil {
		if ext := s.t.External4(); ext.IsValid() {
			b := natpmpAddressResponse(ext, epoch)
			_, _ = s.udp4.WriteToUDPAddrPort(b, netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 1}), pcp.ClientPort))
		}
	}
}

// announceClients unicasts the PCP ANNOUNCE to every client holding a
// PCP mapping (RFC 6887 §14.1.1 allows it): behind a PerClient backend
// the clients are subscribers' routers, which a multicast on the
// subscriber interface may not reach.
func (s *Server) announceClients(epoch uint32) {
	if !s.cfg.PCP {
		return
	}
	a := (&pcp.Message{Response: true, Opcode: pcp.OpAnnounce, Epoch: epoch}).Append(nil)
	sent := map[netip.Addr]bool{}
	for _, m := range s.t.Mappings() {
		if m.Via != ViaPCP || sent[m.Client] {
			continue
		}
		sent[m.Client] = true
		c := s.udp4
		if m.Client.Is6() {
			c = s.udp6
		}
		if c != nil {
			_, _ = c.WriteToUDPAddrPort(a, netip.AddrPortFrom(m.Client, pcp.ClientPort))
		}
	}
}
