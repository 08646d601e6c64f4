package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/unmap-dev/unmap/lab"
)

// WireGuardModule is the wireguard-go the harness builds when it is not
// given one: the current version on the Go module proxy when this was
// written. It is installed into a temporary GOBIN, never into go.mod.
const WireGuardModule = "golang.zx2c4.com/wireguard@v0.0.0-20260522210424-ecfc5a8d5446"

// The WireGuard path: wireguard-go (userspace, over TUN; the kernel has
// no WireGuard module) on the edge and on the relay, the same IPv6 as
// unmap carries through the same CGN, configured over the devices'
// UAPI sockets (configureWireGuard).
var (
	wgNet       = netip.MustParsePrefix("2001:db8:ff::/64")
	wgEdge      = netip.MustParseAddr("2001:db8:ff::1")
	wgRelay     = netip.MustParseAddr("2001:db8:ff::2")
	wgRelayPort = 51820
)

// BuildWireGuard installs WireGuardModule into dir and returns the
// binary's path. It needs the go command and the module proxy.
func BuildWireGuard(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "install", WireGuardModule)
	cmd.Dir = dir // outside any module: go.mod is not consulted
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", WireGuardModule, err, out)
	}
	return filepath.Join(dir, "wireguard"), nil
}

// setupWireGuard builds the tunnel between edge and relay and routes the
// site's IPv6 through it: the lan host gets lab.SiteHost6Addr, statically.
// Keys are made and the devices configured from Go (wgctrl speaks the
// userspace device's UAPI socket), so no wg program is needed.
func setupWireGuard(ctx context.Context, l *lab.Lab, wgGo string) (func() error, error) {
	if wgGo == "" {
		return nil, errors.New("wireguard path: no wireguard-go binary given")
	}
	suffix := l.Prefix[len(l.Prefix)-6:]
	ends := []struct {
		ns   *lab.NS
		name string
		key  wgtypes.Key
	}{
		{ns: l.NS(lab.Edge), name: "wg" + suffix + "e"},
		{ns: l.NS(lab.Relay), name: "wg" + suffix + "r"},
	}
	for i := range ends {
		var err error
		if ends[i].key, err = wgtypes.GeneratePrivateKey(); err != nil {
			return nil, fmt.Errorf("wireguard path: key: %w", err)
		}
	}

	var procs []*proc
	stop := func() error {
		var errs []error
		for _, p := range procs {
			errs = append(errs, p.stop())
		}
		return errors.Join(errs...)
	}
	links := make([]netlink.Link, 2)
	for i, e := range ends {
		p, err := start(e.ns, wgGo, "-f", e.name)
		if err != nil {
			return nil, errors.Join(err, stop())
		}
		procs = append(procs, p)
		if links[i], err = waitLink(ctx, e.ns, e.name, p); err != nil {
			return nil, errors.Join(err, stop())
		}
	}
	if err := configureWireGuard(ends[0].name, ends[0].key, ends[1].name, ends[1].key); err != nil {
		return nil, errors.Join(err, stop())
	}
	if err := wgRoutes(l, links[0], links[1]); err != nil {
		return nil, errors.Join(err, stop())
	}
	// The first packet starts the handshake: wait for the path to carry.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.NS(lab.LAN).Ping(pctx, lab.Srv6Addr); err != nil {
		return nil, errors.Join(fmt.Errorf("wireguard path: %w", err), stop())
	}
	return stop, nil
}

// waitLink waits for wireguard-go to create its TUN device.
func waitLink(ctx context.Context, ns *lab.NS, name string, p *proc) (netlink.Link, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		link, err := ns.Netlink().LinkByName(name)
		if err == nil {
			// The configuration socket comes right after the device.
			if _, serr := os.Stat(filepath.Join("/var/run/wireguard", name+".sock")); serr == nil {
				return link, nil
			}
		}
		if err := p.exited(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%s: wireguard-go made no device %s: %v", ns.Name, name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wgRoutes addresses the tunnel and the site's LAN and routes the site's
// IPv6 through the tunnel: lan → edge → wg → relay → inet → srv6.
func wgRoutes(l *lab.Lab, edgeWG, relayWG netlink.Link) error {
	lan, edge, relay := l.NS(lab.LAN).Netlink(), l.NS(lab.Edge).Netlink(), l.NS(lab.Relay).Netlink()
	addr := func(h *netlink.Handle, link netlink.Link, a netip.Addr, bits int) error {
		na := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, bits)), Flags: unix.IFA_F_NODAD}
		if err := h.AddrAdd(link, na); err != nil {
			return fmt.Errorf("address %s on %s: %w", na.IPNet, link.Attrs().Name, err)
		}
		return h.LinkSetUp(link)
	}
	byName := func(h *netlink.Handle, name string) netlink.Link {
		link, err := h.LinkByName(name)
		if err != nil {
			return nil
		}
		return link
	}
	lanVeth, edgeLAN := byName(lan, string(lab.Edge)), byName(edge, string(lab.LAN))
	if lanVeth == nil || edgeLAN == nil {
		return errors.New("wireguard path: lab veths lan—edge not found")
	}
	steps := []error{
		addr(edge, edgeWG, wgEdge, wgNet.Bits()),
		addr(relay, relayWG, wgRelay, wgNet.Bits()),
		addr(edge, edgeLAN, lab.NativeLANAddr6, lab.SitePrefix.Bits()),
		addr(lan, lanVeth, lab.SiteHost6Addr, lab.SitePrefix.Bits()),
	}
	if err := errors.Join(steps...); err != nil {
		return err
	}
	routes := []struct {
		h  *netlink.Handle
		r  netlink.Route
		is string
	}{
		{lan, netlink.Route{Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: lab.NativeLANAddr6.AsSlice()}, "lan default"},
		{edge, netlink.Route{LinkIndex: edgeWG.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: wgRelay.AsSlice()}, "edge default"},
		{relay, netlink.Route{LinkIndex: relayWG.Attrs().Index, Dst: ipNet(lab.SitePrefix), Gw: wgEdge.AsSlice()}, "relay to the site"},
	}
	for _, r := range routes {
		if err := r.h.RouteAdd(&r.r); err != nil {
			return fmt.Errorf("wireguard path: route %s: %w", r.is, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// configureWireGuard sets up the relay's device to listen on wgRelayPort
// for the edge's key and the site's addresses, and the edge's device to
// send everything to the relay's public address. wireguard-go serves
// each device's UAPI socket under /var/run/wireguard, a path outside any
// network namespace, so the client talks to both from here.
func configureWireGuard(edgeDev string, edgeKey wgtypes.Key, relayDev string, relayKey wgtypes.Key) error {
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("wireguard path: wgctrl: %w", err)
	}
	defer c.Close()
	port, keepalive := wgRelayPort, 25*time.Second
	relayEnd := &net.UDPAddr{IP: lab.RelayAddr.AsSlice(), Port: wgRelayPort}
	devs := []struct {
		name string
		cfg  wgtypes.Config
	}{
		{relayDev, wgtypes.Config{PrivateKey: &relayKey, ListenPort: &port, Peers: []wgtypes.PeerConfig{{
			PublicKey:  edgeKey.PublicKey(),
			AllowedIPs: []net.IPNet{*ipNet(lab.SitePrefix), *ipNet(netip.PrefixFrom(wgEdge, 128))},
		}}}},
		{edgeDev, wgtypes.Config{PrivateKey: &edgeKey, Peers: []wgtypes.PeerConfig{{
			PublicKey:                   relayKey.PublicKey(),
			Endpoint:                    relayEnd,
			PersistentKeepaliveInterval: &keepalive,
			AllowedIPs:                  []net.IPNet{*ipNet(netip.MustParsePrefix("::/0"))},
		}}}},
	}
	for _, d := range devs {
		if err := c.ConfigureDevice(d.name, d.cfg); err != nil {
			return fmt.Errorf("wireguard path: configure %s: %w", d.name, err)
		}
	}
	return nil
}
