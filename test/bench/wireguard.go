package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/test/lab"
)

// WireGuardModule is the wireguard-go the harness builds when it is not
// given one: the current version on the Go module proxy when this was
// written. It is installed into a temporary GOBIN, never into go.mod.
const WireGuardModule = "golang.zx2c4.com/wireguard@v0.0.0-20260522210424-ecfc5a8d5446"

// The WireGuard path: wireguard-go (userspace, over TUN; the kernel has
// no WireGuard module) on the edge and on the relay, the same IPv6 as
// unmap carries through the same CGN, configured with `wg`.
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
func setupWireGuard(ctx context.Context, l *lab.Lab, wgGo, dir string) (func() error, error) {
	if _, err := exec.LookPath("wg"); err != nil {
		return nil, fmt.Errorf("wireguard path: wg (Debian's wireguard-tools) is needed: %w", err)
	}
	if wgGo == "" {
		return nil, errors.New("wireguard path: no wireguard-go binary given")
	}
	suffix := l.Prefix[len(l.Prefix)-6:]
	ends := []struct {
		ns   *lab.NS
		name string
		key  string
	}{
		{l.NS(lab.Edge), "wg" + suffix + "e", filepath.Join(dir, "wg-edge.key")},
		{l.NS(lab.Relay), "wg" + suffix + "r", filepath.Join(dir, "wg-relay.key")},
	}
	pubs := make([]string, 2)
	for i, e := range ends {
		priv, err := exec.CommandContext(ctx, "wg", "genkey").Output()
		if err != nil {
			return nil, fmt.Errorf("wg genkey: %w", err)
		}
		if err := os.WriteFile(e.key, priv, 0o600); err != nil {
			return nil, err
		}
		pc := exec.CommandContext(ctx, "wg", "pubkey")
		pc.Stdin = bytes.NewReader(priv)
		pub, err := pc.Output()
		if err != nil {
			return nil, fmt.Errorf("wg pubkey: %w", err)
		}
		pubs[i] = strings.TrimSpace(string(pub))
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
	edge, relay := ends[0], ends[1]
	relayEnd := netip.AddrPortFrom(lab.RelayAddr, uint16(wgRelayPort)).String()
	cmds := []struct {
		ns   *lab.NS
		args []string
	}{
		{relay.ns, []string{"set", relay.name, "listen-port", fmt.Sprint(wgRelayPort), "private-key", relay.key,
			"peer", pubs[0], "allowed-ips", lab.SitePrefix.String() + "," + netip.PrefixFrom(wgEdge, 128).String()}},
		{edge.ns, []string{"set", edge.name, "private-key", edge.key,
			"peer", pubs[1], "allowed-ips", "::/0", "endpoint", relayEnd, "persistent-keepalive", "25"}},
	}
	for _, c := range cmds {
		if out, err := c.ns.Output(ctx, "wg", c.args...); err != nil {
			return nil, errors.Join(fmt.Errorf("%w\n%s", err, out), stop())
		}
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
