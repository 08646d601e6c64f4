package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/lab"
)

// largestEcho finds the largest ICMPv6 echo request whose reply comes
// back from srv6, sizes as whole IPv6 packets. The reply has the
// request's size, so this is the smaller of the two directions (and
// srv6's kernel, having learnt a smaller path MTU from a "too big", may
// fragment a reply: the size probes of probe.go measure each direction
// on its own). The echo is what the issue names; both are reported.
func largestEcho(ctx context.Context, lan *lab.NS) (int, error) {
	c, err := lan.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ic, ok := c.(*net.IPConn)
	if !ok {
		return 0, fmt.Errorf("echo: %T is not an IP socket", c)
	}
	if err := rawNoFragments(ic); err != nil {
		return 0, err
	}
	id := rand.IntN(0xffff) + 1
	seq := 0
	to := &net.IPAddr{IP: lab.Srv6Addr.AsSlice()}
	buf := make([]byte, 2048)
	const hdr = 40 + 8 // IPv6 and ICMPv6 echo headers
	return largest(1280, lab.MTU, func(size int) (bool, error) {
		data := bytes.Repeat([]byte{'e'}, size-hdr)
		for range 2 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			seq++
			// The kernel fills in the checksum of a raw ICMPv6 socket.
			req, err := (&icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}).Marshal(nil)
			if err != nil {
				return false, err
			}
			if _, err := ic.WriteTo(req, to); err != nil {
				return false, fmt.Errorf("echo of %d bytes: %w", size, err)
			}
			deadline := time.Now().Add(250 * time.Millisecond)
			for {
				_ = ic.SetReadDeadline(deadline)
				n, _, err := ic.ReadFrom(buf)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				if err != nil {
					continue
				}
				m, err := icmp.ParseMessage(58, buf[:n])
				if err != nil || m.Type != ipv6.ICMPTypeEchoReply {
					continue
				}
				if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq && len(e.Data) == len(data) {
					return true, nil
				}
			}
		}
		return false, nil
	})
}

// rawNoFragments makes a raw IPv6 socket send each packet whole at any
// size up to the interface MTU, whatever path MTU it has learnt.
func rawNoFragments(c *net.IPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE),
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1))
	})
	return errors.Join(err, serr)
}
