package relay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// quicBuffer is the socket buffer quic-go asks for (7 MiB). Above the
// system's rmem_max/wmem_max only CAP_NET_ADMIN may set it, which the
// relay no longer has once it serves edges: it is set here, while the
// agent still may, and quic-go then finds it large enough.
const quicBuffer = 7 << 20

// listenControl binds the control channel's UDP socket before the agent
// lowers its privileges: a listen port below 1024 (443 by default) needs
// CAP_NET_BIND_SERVICE, and the buffers CAP_NET_ADMIN.
func listenControl(addr netip.AddrPort) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			// Best effort: without the right, quic-go says so and runs
			// with the system's maximum.
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, quicBuffer)
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, quicBuffer)
		})
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", addr, err)
	}
	return pc, nil
}
