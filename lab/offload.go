package lab

import (
	"fmt"
	"net"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/xdp"
)

// Ethtool commands (linux/ethtool.h): each set command's get is one less.
const (
	EthtoolSTXCSUM = 0x17
	EthtoolSTSO    = 0x1f
	EthtoolSGSO    = 0x24
	EthtoolSGRO    = 0x2c
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct{ cmd, data uint32 }

// ifreqData is struct ifreq with the ifr_data pointer member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// Ethtool runs ethtool_value commands (such as {EthtoolSGRO, 0}) on an
// interface of the namespace, in order, and returns each one's data after
// the call (a get command's answer).
func (n *NS) Ethtool(ifname string, cmds ...[2]uint32) ([]uint32, error) {
	out := make([]uint32, 0, len(cmds))
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, c := range cmds {
			v := ethtoolValue{cmd: c[0], data: c[1]}
			var ifr ifreqData
			copy(ifr.name[:], ifname)
			ifr.data = unsafe.Pointer(&v)
			if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
				return fmt.Errorf("%s: ethtool %#x on %s: %w", n.Name, c[0], ifname, errno)
			}
			out = append(out, v.data)
		}
		return nil
	})
	return out, err
}

// wireLike makes a veth behave like a NIC on a wire for XDP:
//
//   - TX checksumming off: the kernel computes checksums in software
//     before a packet leaves. A veth otherwise hands its peer packets whose
//     checksum is only the pseudo-header's partial sum (the offload a NIC
//     would complete on the wire); an XDP program on the peer would see,
//     and rewrite, a checksum no real wire carries.
//   - GRO on: a veth takes XDP_TX and XDP_REDIRECT frames from its peer's
//     XDP program only when it has GRO or an XDP program of its own (see
//     makeXDPReady for why the agents' peers get a program too).
func (n *NS) wireLike(ifname string) error {
	_, err := n.Ethtool(ifname, [2]uint32{EthtoolSTXCSUM, 0}, [2]uint32{EthtoolSGRO, 1})
	return err
}

// agentPeers are the far ends of the links the agents attach XDP to: the
// veth in namespace In named Ifname.
var agentPeers = []peerEnd{
	{LAN, string(Edge)}, {CGN, string(Edge)}, // edge: lan_interface, wan_interface
	{Inet, string(Relay)}, {Sub, string(Relay)}, {Sub6, string(Relay)}, // relay: external, subscribers
}

// peerEnd is a veth end: the namespace and the veth's name there.
type peerEnd struct {
	In     Role
	Ifname string
}

// PeerXDP is the link of the pass program on the far end of an agent
// link (the veth ifname in namespace in), if the lab made one: a
// benchmark puts a program of its own there with Update (a counter on
// the NAT's next hop, say). The lab closes it at teardown.
func (l *Lab) PeerXDP(in Role, ifname string) (link.Link, bool) {
	xl, ok := l.peerXDP[peerEnd{in, ifname}]
	return xl, ok
}

// makeXDPReady attaches a pass-everything XDP program to the far end of
// every agent link, so the agents' XDP_TX and XDP_REDIRECT frames are
// received: a veth takes them only when it runs an XDP program (GRO alone
// is not enough on this kernel: the redirect fails with EOPNOTSUPP).
func (l *Lab) makeXDPReady() error {
	for _, p := range agentPeers {
		n := l.ns[p.In]
		err := n.Do(func() error {
			ifi, err := net.InterfaceByName(p.Ifname)
			if err != nil {
				return err
			}
			xl, err := xdp.AttachPass(ifi.Index)
			if err != nil {
				return err
			}
			n.track(xl.Close)
			l.peerXDP[p] = xl
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s/%s: %w", n.Name, p.Ifname, err)
		}
	}
	return nil
}
