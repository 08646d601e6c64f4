package edge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// RAConfig says what the edge advertises on its LAN so that hosts get
// addresses by SLAAC (RFC 4862) and take the edge as their IPv6 router.
type RAConfig struct {
	Interface string        // LAN interface
	Prefix    netip.Prefix  // the /64 of the LAN, from the delegated prefix
	MTU       uint32        // link MTU to advertise; 0 means do not advertise one
	Interval  time.Duration // between unsolicited RAs; default 60s
	Lifetime  time.Duration // router lifetime; default 30 min
}

// RA timing limits of RFC 4861 section 6.2.1 and 10.
const (
	minRAInterval  = 3 * time.Second // MinRtrAdvInterval floor
	maxRAInterval  = 1800 * time.Second
	minDelayBetRAs = 3 * time.Second // MIN_DELAY_BETWEEN_RAS: answers to solicitations are rate-limited
)

func (c RAConfig) withDefaults() (RAConfig, error) {
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.Lifetime == 0 {
		c.Lifetime = 30 * time.Minute
	}
	switch {
	case c.Interface == "":
		return c, errors.New("router advertisements: no interface")
	case !c.Prefix.Addr().Is6() || c.Prefix.Bits() != 64:
		return c, fmt.Errorf("router advertisements: %v is not an IPv6 /64 (SLAAC needs one)", c.Prefix)
	case c.Interval < minRAInterval || c.Interval > maxRAInterval:
		return c, fmt.Errorf("router advertisements: interval %v is outside %v..%v", c.Interval, minRAInterval, maxRAInterval)
	case c.Lifetime < c.Interval || c.Lifetime > 9000*time.Second:
		return c, fmt.Errorf("router advertisements: lifetime %v is outside interval..9000s", c.Lifetime)
	}
	return c, nil
}

// Advertiser sends router advertisements on one interface: periodically,
// in answer to router solicitations, and a last one with zero lifetimes on
// shutdown so hosts stop using the prefix at once.
type Advertiser struct {
	cfg  RAConfig
	ifi  *net.Interface
	conn *ipv6.PacketConn
	log  *slog.Logger

	sent, solicited atomic.Uint64
	keep            atomic.Bool // Run ends without withdrawing (KeepOnExit)
}

// KeepOnExit makes Run end without the withdrawing RA: the hosts keep the
// prefix and the default route until their lifetimes run out, because the
// router goes on forwarding without its agent (a restart).
func (a *Advertiser) KeepOnExit() { a.keep.Store(true) }

// Counts returns how many RAs were sent and how many of them answered a
// router solicitation.
func (a *Advertiser) Counts() (sent, solicited uint64) { return a.sent.Load(), a.solicited.Load() }

// NewAdvertiser opens the ICMPv6 socket. It must be called in the network
// namespace of the interface; Run may then go on in any goroutine.
func NewAdvertiser(cfg RAConfig, log *slog.Logger) (*Advertiser, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("router advertisements: %w", err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, cfg.Interface)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("router advertisements on %s: %w", cfg.Interface, err)
	}
	conn := ipv6.NewPacketConn(pc)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	allRouters := &net.IPAddr{IP: net.ParseIP("ff02::2")}
	// RAs and the solicitations they answer travel with hop limit 255 so a
	// receiver can tell they were not forwarded (RFC 4861 section 6.1).
	if err := errors.Join(conn.SetICMPFilter(&f), conn.JoinGroup(ifi, allRouters),
		conn.SetMulticastHopLimit(255), conn.SetHopLimit(255), conn.SetMulticastInterface(ifi),
		conn.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true)); err != nil {
		pc.Close()
		return nil, fmt.Errorf("router advertisements on %s: %w", cfg.Interface, err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Advertiser{cfg: cfg, ifi: ifi, conn: conn, log: log.With("if", cfg.Interface, "prefix", cfg.Prefix)}, nil
}

// Run advertises until ctx ends, then withdraws the prefix and the route
// and closes the socket.
func (a *Advertiser) Run(ctx context.Context) error {
	defer a.conn.Close()
	solicited := make(chan struct{}, 1)
	go a.listen(solicited)
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	var last time.Time
	send := func() {
		if err := a.send(false); err != nil {
			a.log.Warn("router advertisement not sent", "err", err)
			return
		}
		last = time.Now()
	}
	send()
	for {
		select {
		case <-ctx.Done():
			if a.keep.Load() {
				return nil
			}
			if err := a.send(true); err != nil {
				a.log.Warn("final router advertisement not sent", "err", err)
			}
			return nil
		case <-tick.C:
			send()
		case <-solicited:
			if wait := minDelayBetRAs - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					continue
				}
			}
			a.solicited.Add(1)
			send()
		}
	}
}

// listen turns valid router solicitations into a signal until the socket
// closes.
func (a *Advertiser) listen(solicited chan<- struct{}) {
	buf := make([]byte, 1500)
	for {
		n, cm, _, err := a.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if cm == nil || cm.HopLimit != 255 || cm.IfIndex != a.ifi.Index || n < 8 ||
			buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) || buf[1] != 0 {
			continue // not a valid RS (RFC 4861 section 6.1.1)
		}
		select {
		case solicited <- struct{}{}:
		default:
		}
	}
}

func (a *Advertiser) send(final bool) error {
	body, err := a.body(final)
	if err != nil {
		return err
	}
	msg := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: body}}
	b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err != nil {
		return err
	}
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: a.ifi.Name}
	if _, err := a.conn.WriteTo(b, &ipv6.ControlMessage{HopLimit: 255, IfIndex: a.ifi.Index}, dst); err != nil {
		return err
	}
	a.sent.Add(1)
	return nil
}

// body is the RA after its ICMPv6 type, code and checksum.
func (a *Advertiser) body(final bool) ([]byte, error) {
	lifetime, valid, preferred := a.cfg.Lifetime, 2*a.cfg.Lifetime, a.cfg.Lifetime
	if final {
		// RFC 4861 section 6.2.5 and RFC 4862 5.5.3: a zero router lifetime
		// and preferred lifetime stop hosts using the edge and the prefix.
		lifetime, preferred = 0, 0
		valid = 2 * time.Hour // the shortest a host honours (RFC 4862 5.5.3 e)
	}
	opts := layers.ICMPv6Options{{Type: layers.ICMPv6OptPrefixInfo, Data: prefixInfo(a.cfg.Prefix, valid, preferred)}}
	if len(a.ifi.HardwareAddr) == 6 {
		opts = append(opts, layers.ICMPv6Option{Type: layers.ICMPv6OptSourceAddress, Data: a.ifi.HardwareAddr})
	}
	if a.cfg.MTU != 0 {
		mtu := make([]byte, 6)
		binary.BigEndian.PutUint32(mtu[2:], a.cfg.MTU)
		opts = append(opts, layers.ICMPv6Option{Type: layers.ICMPv6OptMTU, Data: mtu})
	}
	ra := &layers.ICMPv6RouterAdvertisement{
		HopLimit:       64,
		RouterLifetime: uint16(lifetime / time.Second),
		Options:        opts,
	}
	buf := gopacket.NewSerializeBuffer()
	if err := ra.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// prefixInfo is the body of a Prefix Information option (RFC 4861 4.6.2)
// after type and length: on-link and autonomous, so hosts form addresses.
func prefixInfo(p netip.Prefix, valid, preferred time.Duration) []byte {
	const onLink, autonomous = 0x80, 0x40
	b := make([]byte, 30)
	b[0] = byte(p.Bits())
	b[1] = onLink | autonomous
	binary.BigEndian.PutUint32(b[2:], uint32(valid/time.Second))
	binary.BigEndian.PutUint32(b[6:], uint32(preferred/time.Second))
	a := p.Addr().As16()
	copy(b[14:], a[:])
	return b
}
