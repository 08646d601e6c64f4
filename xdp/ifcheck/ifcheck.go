// Package ifcheck looks, when an agent starts, at the interfaces it
// attaches XDP to for the two setups that make XDP lose or corrupt
// traffic without a trace, and says how to fix them. Both come from
// veth, the link of containers, network namespaces and many VMs' hosts
// (lab/offload.go switches them off for the lab):
//
//   - The veth's peer has TX checksum offload on. A packet its side sends
//     arrives holding only a partial L4 checksum (the offload a NIC would
//     complete on the wire). XDP rewrites headers and patches that field
//     as if it were whole, the frame leaves by XDP_TX or XDP_REDIRECT with
//     no offload to complete it, and the next hop sees a wrong checksum (a
//     conntrack NAT on the path then leaves the packet un-NATed).
//   - The veth's peer has no XDP program. A veth takes the frames XDP
//     sends into it (XDP_TX back out of this interface, or XDP_REDIRECT
//     from another) only when its peer is ready for XDP frames; otherwise
//     they are dropped and counted only in the sender's ethtool
//     statistics (rx_queue_0_xdp_tx_errors).
//
// Physical NICs complete their own offloads and take XDP frames; a
// virtio_net guest refuses XDP until its receive offloads are off. So
// only veth interfaces are checked. The peer may be in another network
// namespace; it is looked up by the namespace id the kernel reports, and
// its offloads are read through a socket made in that namespace, found
// among the named ones (ip netns), Docker's and PID 1's.
package ifcheck

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A Finding is one problem with an interface an agent attaches to.
type Finding struct {
	Interface string // the agent's interface
	Problem   string // what goes wrong, and why
	Fix       string // what the operator should run or change
}

// Check inspects the interface named ifname in the calling thread's
// network namespace. It returns the problems found (none for an
// interface that is not a veth) and an error only when the interface
// itself cannot be read; a peer it cannot inspect is a finding.
func Check(ifname string) ([]Finding, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ifname, err)
	}
	if link.Type() != "veth" {
		return nil, nil
	}
	a := link.Attrs()
	p, err := findPeer(a.ParentIndex, a.NetNsID)
	if err != nil {
		return []Finding{{Interface: ifname,
			Problem: fmt.Sprintf("cannot inspect its veth peer (index %d, namespace id %d): %v", a.ParentIndex, a.NetNsID, err),
			Fix:     "on the peer, in its namespace: ethtool -K PEER tx off, and attach an XDP program that passes (see OPERATING.md, Deploying on VMs, containers and veth)",
		}}, nil
	}
	var out []Finding
	where := ""
	if a.NetNsID >= 0 {
		where = fmt.Sprintf(" (in namespace id %d%s)", a.NetNsID, p.nsPath)
	}
	if !p.xdp {
		out = append(out, Finding{Interface: ifname,
			Problem: fmt.Sprintf("its veth peer %s%s has no XDP program: frames the agent sends out of %s (XDP_TX, or XDP_REDIRECT from its other interface) are dropped, seen only in the xdp error counters of ethtool -S", p.name, where, ifname),
			Fix:     fmt.Sprintf("attach an XDP program that passes to %s, in its namespace (for example: ip link set dev %s xdpdrv obj PASS.o sec xdp)", p.name, p.name),
		})
	}
	switch {
	case p.txErr != nil:
		out = append(out, Finding{Interface: ifname,
			Problem: fmt.Sprintf("cannot read the TX checksum offload of its veth peer %s%s: %v", p.name, where, p.txErr),
			Fix:     fmt.Sprintf("make sure it is off: ethtool -K %s tx off, in its namespace", p.name),
		})
	case p.txCsum:
		out = append(out, Finding{Interface: ifname,
			Problem: fmt.Sprintf("its veth peer %s%s has TX checksum offload on: packets from it arrive with partial L4 checksums, which XDP translation turns into wrong ones (a NAT on the path then drops or ignores them)", p.name, where),
			Fix:     fmt.Sprintf("ethtool -K %s tx off, in its namespace", p.name),
		})
	}
	return out, nil
}

// Warn checks each interface and logs every finding at warning level
// with its fix; an interface it cannot read is logged at debug level
// (the agent's own attach reports a missing interface).
func Warn(log *slog.Logger, ifnames ...string) {
	for _, name := range ifnames {
		fs, err := Check(name)
		if err != nil {
			log.Debug("interface check", "if", name, "err", err)
			continue
		}
		for _, f := range fs {
			log.Warn("interface check: "+f.Problem, "if", f.Interface, "fix", f.Fix)
		}
	}
}

// peer is what Check learns of a veth's peer.
type peer struct {
	name   string
	nsPath string // ", PATH" when the peer is in another namespace
	xdp    bool   // an XDP program is attached
	txCsum bool   // TX checksum offload on
	txErr  error  // the offload could not be read
}

// findPeer reads the peer at index in the namespace with id nsid (-1:
// the caller's own).
func findPeer(index, nsid int) (*peer, error) {
	if index == 0 {
		return nil, errors.New("the kernel names no peer")
	}
	link, err := linkByIndexIn(index, nsid)
	if err != nil {
		return nil, err
	}
	p := &peer{name: link.Attrs().Name}
	if x := link.Attrs().Xdp; x != nil && x.Attached {
		p.xdp = true
	}
	sock := func() (int, error) { return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0) }
	if nsid >= 0 {
		path, err := nsPathOf(nsid)
		if err != nil {
			p.txErr = err
			return p, nil
		}
		p.nsPath = ", " + path
		sock = func() (int, error) { return socketIn(path) }
	}
	fd, err := sock()
	if err != nil {
		p.txErr = err
		return p, nil
	}
	defer unix.Close(fd)
	p.txCsum, p.txErr = txChecksum(fd, p.name)
	return p, nil
}

// linkByIndexIn asks for the link at index in the namespace with id nsid
// as the caller's namespace numbers it (IFLA_TARGET_NETNSID, Linux 4.20):
// netlink answers for another namespace without entering it.
func linkByIndexIn(index, nsid int) (netlink.Link, error) {
	if nsid < 0 {
		return netlink.LinkByIndex(index)
	}
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(nsid))))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, fmt.Errorf("link %d in namespace id %d: %w", index, nsid, err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("link %d in namespace id %d: %d answers", index, nsid, len(msgs))
	}
	return netlink.LinkDeserialize(nil, msgs[0])
}

// nsCandidates are where the namespaces of a veth's far end usually have
// a file: those made by ip netns, by Docker, and the host's (PID 1's).
var nsCandidates = []string{"/run/netns/*", "/var/run/docker/netns/*", "/proc/1/ns/net"}

// nsPathOf finds a file of the namespace the caller's namespace numbers
// nsid.
func nsPathOf(nsid int) (string, error) {
	for _, pattern := range nsCandidates {
		paths, _ := filepath.Glob(pattern)
		for _, path := range paths {
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			id, err := netlink.GetNetNsIdByFd(int(f.Fd()))
			f.Close()
			if err == nil && id == nsid {
				return path, nil
			}
		}
	}
	return "", fmt.Errorf("namespace id %d has no file under %v", nsid, nsCandidates)
}

// socketIn makes a socket in the namespace at path: a socket stays in
// the namespace it was made in, and an ethtool request on it names
// devices there. The thread enters the namespace for the one call and
// goes back; if it cannot, it stays locked, and the runtime ends it when
// the goroutine exits, so no code runs on it in the wrong namespace.
func socketIn(path string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, err, restored := func() (int, error, bool) {
			target, err := netns.GetFromPath(path)
			if err != nil {
				return -1, err, true
			}
			defer target.Close()
			home, err := netns.Get()
			if err != nil {
				return -1, err, true
			}
			defer home.Close()
			if err := netns.Set(target); err != nil {
				return -1, fmt.Errorf("enter %s: %w", path, err), true
			}
			fd, serr := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err := netns.Set(home); err != nil {
				if serr == nil {
					unix.Close(fd)
				}
				return -1, fmt.Errorf("leave %s: %w", path, err), false
			}
			return fd, serr, true
		}()
		if restored {
			runtime.UnlockOSThread()
		}
		c <- result{fd, err}
	}()
	r := <-c
	return r.fd, r.err
}

// ethtoolGTXCSUM is ETHTOOL_GTXCSUM (linux/ethtool.h).
const ethtoolGTXCSUM = 0x16

// txChecksum reads whether ifname, in fd's namespace, has TX checksum
// offload on (ETHTOOL_GTXCSUM, what ethtool -k shows as
// tx-checksumming).
func txChecksum(fd int, ifname string) (bool, error) {
	v := struct{ cmd, data uint32 }{cmd: ethtoolGTXCSUM}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [24 - unsafe.Sizeof(uintptr(0))]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return false, fmt.Errorf("ethtool %s: %w", ifname, errno)
	}
	return v.data != 0, nil
}
