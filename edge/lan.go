package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lan serves the site's LAN from the delegated prefix: the edge takes the
// first address of its first /64 and advertises the /64 for SLAAC. A new
// grant with another prefix moves both.
type lan struct {
	ifname string
	log    *slog.Logger

	mu     sync.Mutex
	prefix netip.Prefix // the /64 served now
	stop   func()       // ends the advertiser
}

// lanPrefix is the /64 of the LAN inside a delegated prefix.
func lanPrefix(delegated netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(delegated.Addr(), 64).Masked()
}

// serve (re)configures the LAN for a delegated prefix.
func (l *lan) serve(ctx context.Context, delegated netip.Prefix) error {
	if !delegated.IsValid() {
		return errors.New("no IPv6 prefix granted")
	}
	p := lanPrefix(delegated)
	l.mu.Lock()
	defer l.mu.Unlock()
	if p == l.prefix {
		return nil
	}
	link, err := netlink.LinkByName(l.ifname)
	if err != nil {
		return fmt.Errorf("lan_interface %s: %w", l.ifname, err)
	}
	if l.prefix.IsValid() {
		l.stop()
		_ = netlink.AddrDel(link, gatewayAddr(l.prefix))
	}
	if err := netlink.AddrReplace(link, gatewayAddr(p)); err != nil {
		return fmt.Errorf("address %v on %s: %w", p.Addr().Next(), l.ifname, err)
	}
	adv, err := NewAdvertiser(RAConfig{Interface: l.ifname, Prefix: p, MTU: 1500}, l.log)
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = adv.Run(actx); close(done) }()
	l.prefix, l.stop = p, func() { cancel(); <-done }
	l.log.Info("serving the LAN", "if", l.ifname, "prefix", p)
	return nil
}

// close withdraws the prefix from the LAN hosts (the advertiser's last
// RA) and removes the edge's address.
func (l *lan) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.prefix.IsValid() {
		return
	}
	l.stop()
	if link, err := netlink.LinkByName(l.ifname); err == nil {
		_ = netlink.AddrDel(link, gatewayAddr(l.prefix))
	}
	l.prefix = netip.Prefix{}
}

func gatewayAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{
		IPNet: &net.IPNet{IP: p.Addr().Next().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)},
		Flags: unix.IFA_F_NODAD,
	}
}
