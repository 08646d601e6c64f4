package lab

import (
	"context"
	"net"
)

// Sockets are created on a thread inside the namespace and stay there for
// their whole life: everything after creation (Accept, Read, Write, Close)
// works from any goroutine. Listeners and packet conns opened here are
// closed by Lab.Close if their user has not closed them.

// Listen opens a stream listener inside the namespace ("tcp", "tcp4",
// "tcp6", "unix"...).
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	n.track(ln.Close)
	return ln, nil
}

// ListenPacket opens a packet socket inside the namespace ("udp",
// "udp4", "udp6", "ip4:icmp"...).
func (n *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := n.Do(func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	n.track(pc.Close)
	return pc, nil
}

// Dial connects from inside the namespace. The socket is made and the
// connection attempted on the namespace's thread; use IP literals (a name
// lookup would run elsewhere). The caller owns the connection: Lab.Close
// does not close it.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}
