package bench

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/test/lab"
)

// Offloads says how the lab's veths run during a measurement.
type Offloads string

const (
	// AsIs keeps what the lab sets: TX checksumming off, GRO on, the
	// segmentation offloads the kernel then allows.
	AsIs Offloads = "as is"
	// Off turns GRO, GSO and TSO off on every veth end of the lab: each
	// packet crosses every hop as one 1500-byte frame.
	Off Offloads = "gro/gso/tso off"
)

// ethtool commands (linux/ethtool.h): each set command's get is one less.
const (
	ethtoolSTSO = 0x1f
	ethtoolSGSO = 0x24
	ethtoolSGRO = 0x2c
)

type ethtoolValue struct{ cmd, data uint32 }

// ifreqData is struct ifreq with its ifr_data pointer member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// offloadsOff turns GRO, GSO and TSO off on both ends of every veth of l.
func offloadsOff(l *lab.Lab) error {
	for _, n := range l.Namespaces() {
		for _, in := range lab.Interfaces(n.Role) {
			if err := n.Do(func() error { return ethtoolOff(in.Name) }); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// ethtoolOff runs in the namespace that holds ifname.
func ethtoolOff(ifname string) error {
	if _, err := net.InterfaceByName(ifname); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	call := func(cmd, data uint32) (uint32, error) {
		v := ethtoolValue{cmd: cmd, data: data}
		var ifr ifreqData
		copy(ifr.name[:], ifname)
		ifr.data = unsafe.Pointer(&v)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return 0, errno
		}
		return v.data, nil
	}
	for _, set := range []uint32{ethtoolSGRO, ethtoolSGSO, ethtoolSTSO} {
		_, err := call(set, 0)
		if errors.Is(err, unix.EOPNOTSUPP) {
			// TSO cannot be changed while TX checksumming is off (the
			// lab's setting); that is fine if it is off already.
			if on, gerr := call(set-1, 0); gerr == nil && on == 0 {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("ethtool %#x off on %s: %w", set, ifname, err)
		}
	}
	return nil
}
