package slowpath

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/xdp"
)

// Datapath is an agent's XDP datapath and what its slow path needs
// beside it: the translation config the programs run with (for the
// reference model that parses misses and translates held packets), the
// injector that sends packets back into the network, and the links that
// attach it.
type Datapath struct {
	XDP   *xdp.Datapath
	Cfg   xlat.Config
	Inj   *Injector
	links []link.Link
	log   *slog.Logger
}

// Open loads the datapath with cfg and opens the injector. With
// o.PinPath set, maps are pinned there, or taken back from the last
// agent's load (xdp/pin.go): the programs go on forwarding the flows
// while the agent is down, and the next agent takes them back.
func Open(cfg xlat.Config, o xdp.Options, log *slog.Logger) (*Datapath, error) {
	d, err := xdp.Load(cfg, o)
	if err != nil {
		return nil, err
	}
	dp := &Datapath{XDP: d, Cfg: cfg, log: log}
	if dp.Inj, err = NewInjector(); err != nil {
		return nil, errors.Join(err, dp.Close())
	}
	return dp, nil
}

// Attach attaches role's program to the interface ifname through a link
// pinned in pinPath (a new agent replaces the last one's program without
// a moment of no XDP), and returns its ifindex.
func (dp *Datapath) Attach(ifname string, role xlat.Role, pinPath string) (int, error) {
	return dp.AttachAs(ifname, role, pinPath, "link-"+role.String())
}

// AttachAs is Attach with the link pinned under name: a role's program
// on a second interface (the CGNAT's further subscriber interfaces)
// needs a pin of its own.
func (dp *Datapath) AttachAs(ifname string, role xlat.Role, pinPath, name string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("interface: %w", err)
	}
	l, mode, err := dp.XDP.AttachPinned(ifi.Index, role, filepath.Join(pinPath, name))
	if err != nil {
		return 0, err
	}
	dp.links = append(dp.links, l)
	dp.log.Info("XDP attached", "if", ifname, "role", role, "mode", mode)
	return ifi.Index, nil
}

// AcceptLocal sets accept_local on ifname. Carriers leave the programs
// with one of the host's addresses as their source; when a program
// passes one to the stack instead (no neighbour entry for the next hop
// yet, `pass-no-neigh`, or no XDP route), the kernel sees a packet come
// in with its own address as the source: a martian, dropped unless
// accept_local is set there (test/e2e TestCarriersPassedBeforeNeighbour).
// The price (OPERATING.md, "Privileges and kernel settings"): a packet
// forged with one of the host's addresses as its source is no longer
// refused as a martian on that interface either.
func AcceptLocal(ifname string) error {
	path := "/proc/sys/net/ipv4/conf/" + ifname + "/accept_local"
	if err := os.WriteFile(path, []byte("1"), 0); err != nil {
		return fmt.Errorf("sysctl %s: %w", path, err)
	}
	return nil
}

// Close detaches nothing (the pinned links stay, and the programs go on
// forwarding) but closes what this agent holds.
func (dp *Datapath) Close() error {
	var errs []error
	for _, l := range dp.links {
		errs = append(errs, l.Close())
	}
	if dp.Inj != nil {
		errs = append(errs, dp.Inj.Close())
	}
	return errors.Join(append(errs, dp.XDP.Close())...)
}
