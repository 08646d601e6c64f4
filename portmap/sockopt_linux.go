package portmap

import (
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

// maxHTTPConns bounds the UPnP control connections served at once.
const maxHTTPConns = 16

// bindToDevice binds a socket to the interface (SO_BINDTODEVICE): only
// packets that arrived on it reach the socket.
func bindToDevice(ifname string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.BindToDevice(int(fd), ifname)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// reuseAndBind is bindToDevice plus SO_REUSEADDR, for SSDP's port, which
// other UPnP software on the router may share.
func reuseAndBind(ifname string) func(network, address string, c syscall.RawConn) error {
	bind := bindToDevice(ifname)
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		return bind(network, address, c)
	}
}

func joinGroup4(c *net.UDPConn, ifi *net.Interface, g netip.Addr) error {
	return ipv4.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: g.AsSlice()})
}

func multicastIf4(c *net.UDPConn, ifi *net.Interface) error {
	p := ipv4.NewPacketConn(c)
	if err := p.SetMulticastInterface(ifi); err != nil {
		return err
	}
	return p.SetMulticastLoopback(false)
}

func multicastIf6(c *net.UDPConn, ifi *net.Interface) error {
	p := ipv6.NewPacketConn(c)
	if err := p.SetMulticastInterface(ifi); err != nil {
		return err
	}
	return p.SetMulticastLoopback(false)
}

func limitListener(l net.Listener, n int) net.Listener { return netutil.LimitListener(l, n) }
