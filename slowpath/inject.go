package slowpath

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Injector sends packets that the datapath handed to the agent (a flow's
// first packets, held while the flow was set up) back into the network,
// translated: through raw IP sockets, so the kernel routes them and
// resolves the next hop as for any packet the host sends. It must be made
// in the network namespace the packets belong to.
type Injector struct {
	fd4, fd6 int
}

// NewInjector opens the raw sockets (CAP_NET_RAW).
func NewInjector() (*Injector, error) {
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw IPv4 socket: %w", err)
	}
	// IPPROTO_RAW implies a header-included socket for both families.
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		unix.Close(fd4)
		return nil, fmt.Errorf("raw IPv6 socket: %w", err)
	}
	return &Injector{fd4: fd4, fd6: fd6}, nil
}

// Frame sends an Ethernet frame's IP packet (the datapath's output
// format); the Ethernet header is dropped and the kernel routes the packet.
func (in *Injector) Frame(frame []byte) error {
	if len(frame) < 14+20 {
		return errors.New("inject: frame too short")
	}
	return in.Packet(frame[14:])
}

// Packet sends an IPv4 or IPv6 packet, header included, to its own
// destination address.
func (in *Injector) Packet(p []byte) error {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		dst := netip.AddrFrom4([4]byte(p[16:20]))
		return unix.Sendto(in.fd4, p, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	case len(p) >= 40 && p[0]>>4 == 6:
		dst := netip.AddrFrom16([16]byte(p[24:40]))
		return unix.Sendto(in.fd6, p, 0, &unix.SockaddrInet6{Addr: dst.As16()})
	}
	return errors.New("inject: not an IP packet")
}

// Close closes the sockets.
func (in *Injector) Close() error {
	return errors.Join(unix.Close(in.fd4), unix.Close(in.fd6))
}
