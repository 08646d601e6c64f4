package bench

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/lab"
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

// offloadsOff turns GRO, GSO and TSO off on both ends of every veth of l.
func offloadsOff(l *lab.Lab) error {
	for _, n := range l.Namespaces() {
		for _, in := range lab.Interfaces(n.Role) {
			if err := ethtoolOff(n, in.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func ethtoolOff(n *lab.NS, ifname string) error {
	for _, set := range []uint32{lab.EthtoolSGRO, lab.EthtoolSGSO, lab.EthtoolSTSO} {
		_, err := n.Ethtool(ifname, [2]uint32{set, 0})
		if errors.Is(err, unix.EOPNOTSUPP) {
			// TSO cannot be changed while TX checksumming is off (the
			// lab's setting); that is fine if it is off already.
			if on, gerr := n.Ethtool(ifname, [2]uint32{set - 1, 0}); gerr == nil && on[0] == 0 {
				continue
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
