package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/unmap-dev/unmap/status"
)

// RelayCarrierPorts is the relay's carrier port range in a deployment:
// narrow, so a test's attacker can cover all of it, yet room for the
// tour's flows (TCP flows keep their port until they idle out).
const RelayCarrierPorts = "20000-20063"

// SubPorts is the block ports of the relay's CGNAT on each SubPool4
// address: eight blocks of 512.
const SubPorts = "40960-45055"

// Deployment is what an operator sets up for the lab's site and relay:
// certificates made by the binary's own `unmap cert`, and one config file
// per agent, all in Dir.
type Deployment struct {
	Bin, Dir                string
	RelayConfig, EdgeConfig string
	RelaySocket, EdgeSocket string // the agents' status sockets
	CGNATLog                string // the relay's CGNAT block log
	// EdgePins and RelayPins are the agents' pin_paths, each on a bpf
	// filesystem mounted for this deployment's agent alone (bpffs mounts
	// are separate instances), so parallel labs never share pins and the
	// two agents share nothing, as on two machines; Close unmounts them.
	EdgePins, RelayPins string
	bpffs               []string // mounted, to unmount
}

// Deploy makes the certificates with bin and writes relay.yaml and
// edge.yaml for the lab's addressing plan into dir: the site "home" is
// granted 2001:db8:5::/56 and accepts inbound flows to its LAN's /64;
// its LAN hosts may map ports by PCP, NAT-PMP and UPnP IGD.
func Deploy(bin, dir string) (*Deployment, error) {
	d := &Deployment{Bin: bin, Dir: dir,
		RelaySocket: filepath.Join(dir, "relay.sock"), EdgeSocket: filepath.Join(dir, "edge.sock")}
	ca, rdir, edir := filepath.Join(dir, "ca"), filepath.Join(dir, "relay"), filepath.Join(dir, "edge")
	for _, args := range [][]string{
		{"cert", "ca", "--out", ca},
		{"cert", "relay", "--ca", ca, "--ip", RelayAddr.String(), "--out", rdir},
		{"cert", "edge", "--ca", ca, "--site", "home", "--out", edir},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("unmap %v: %w\n%s", args, err, out)
		}
	}
	for _, agent := range []string{"edge", "relay"} {
		mnt := filepath.Join(dir, "bpffs-"+agent)
		if err := MountPins(mnt); err != nil {
			return nil, errors.Join(err, d.Close())
		}
		d.bpffs = append(d.bpffs, mnt)
	}
	d.EdgePins = filepath.Join(d.bpffs[0], "unmap", "edge-home")
	d.RelayPins = filepath.Join(d.bpffs[1], "unmap-relay")
	d.RelayConfig = filepath.Join(dir, "relay.yaml")
	d.CGNATLog = filepath.Join(dir, "cgnat-blocks.log")
	relay := fmt.Sprintf(`listen: "%s:443"
tls: {ca: %s/ca.pem, cert: %s/relay.pem, key: %s/relay-key.pem}
interface: %s
addresses: [%s]
carrier_ports: %s
pin_path: %s
sites:
  - {id: home, prefix: "%s", ipv4: %s}
cgnat:
  interface: %s
  inside: "%s"
  gateway: %s
  pool: "%s"
  ports: %s
  blocks_per_subscriber: 2
  log: %s
  inside6: "%s"
  nat64_prefix: "%s"
  more_interfaces: [%s]
  port_mapping: {pcp: true, nat_pmp: true}
`, RelayAddr, rdir, rdir, rdir, Inet, RelayAddr, RelayCarrierPorts, d.RelayPins, SiteGrant, SitePublic4,
		Sub, SubNet, RelaySubAddr, SubPool4, SubPorts, d.CGNATLog, Sub6Inside, NAT64Prefix, Sub6)
	d.EdgeConfig = filepath.Join(dir, "edge.yaml")
	edge := fmt.Sprintf(`site: home
relay: "%s:443"
tls: {ca: %s/ca.pem, cert: %s/edge.pem, key: %s/edge-key.pem}
lan_interface: %s
wan_interface: %s
keepalive: 2s
pin_path: %s
inbound:
  allow:
    - {proto: any, hosts: "%s"}
  forwards:
    - {proto: udp, port: "%d", to: "%s"}
    - {proto: tcp, port: "%d", to: "%s"}
port_mapping: {pcp: true, nat_pmp: true, upnp: true}
`, RelayAddr, edir, edir, edir, LAN, CGN, d.EdgePins, SitePrefix,
		ForwardPort, netip.AddrPortFrom(LANAddr, EchoPort), ForwardPort, netip.AddrPortFrom(LANAddr, EchoPort))
	for path, text := range map[string]string{d.RelayConfig: relay, d.EdgeConfig: edge} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, errors.Join(err, d.Close())
		}
	}
	return d, nil
}

// Close unmounts the deployment's bpf filesystems, dropping the agents'
// pins (and with them any program still attached through a pinned
// link). Stop the agents first.
func (d *Deployment) Close() error {
	var errs []error
	for _, mnt := range d.bpffs {
		errs = append(errs, UnmountPins(mnt))
	}
	d.bpffs = nil
	return errors.Join(errs...)
}

// RelayCmd and EdgeCmd are the agents' command lines, with debug logs.
func (d *Deployment) RelayCmd() *exec.Cmd {
	return exec.Command(d.Bin, "--log-level", "debug", "relay", "-c", d.RelayConfig, "--status-socket", d.RelaySocket)
}

func (d *Deployment) EdgeCmd() *exec.Cmd {
	return exec.Command(d.Bin, "--log-level", "debug", "edge", "-c", d.EdgeConfig, "--status-socket", d.EdgeSocket)
}

// WaitSection polls an agent's status socket until cond accepts the named
// section (decoded into a T), or ctx ends.
func WaitSection[T any](ctx context.Context, socket, name string, cond func(T) bool) (T, error) {
	var last error
	for {
		var v T
		st, err := status.Fetch(ctx, socket)
		if err == nil {
			if err = json.Unmarshal(st.Sections[name], &v); err == nil && cond(v) {
				return v, nil
			}
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("status %s of %s: %w (last error: %v)", name, socket, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EdgeSession is the session section of the edge's status.
type EdgeSession struct {
	Connected bool   `json:"connected"`
	Session   uint64 `json:"session"`
	Prefix    string `json:"prefix"`
}
