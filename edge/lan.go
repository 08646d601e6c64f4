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
	adv    *Advertiser
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
	// Only stop or leave ends the advertiser, never the agent's context
	// alone: on the way out, leave decides whether the hosts keep the
	// prefix.
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { _ = adv.Run(actx); close(done) }()
	l.prefix, l.stop, l.adv = p, func() { cancel(); <-done }, adv
	l.log.Info("serving the LAN", "if", l.ifname, "prefix", p)
	return nil
}

// leave stops advertising when the agent exits, but leaves the LAN as it
// is: the hosts keep their addresses and default route, and the edge its
// gateway address, because the pinned datapath goes on forwarding their
// flows and the next agent serves the same prefix. (`unmap edge --unpin`
// ends the flows; the hosts' route then lapses with its RA lifetime.)
func (l *lan) leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.prefix.IsValid() {
		return
	}
	l.adv.KeepOnExit()
	l.stop()
}

func gatewayAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{
		IPNet: &net.IPNet{IP: p.Addr().Next().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)},
		Flags: unix.IFA_F_NODAD,
	}
}
