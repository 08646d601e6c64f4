package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping sends ICMP echo requests from inside the namespace to dst, one
// every 200 ms, until a matching reply comes back or ctx ends, and returns
// the round-trip time of the reply. An ICMP error about the probe (for
// example destination unreachable) ends it at once with that error. It
// uses a raw socket (the lab runs as root), so no ping binary is needed.
func (n *NS) Ping(ctx context.Context, dst netip.Addr) (time.Duration, error) {
	return n.PingSize(ctx, dst, 0)
}

// PingSize is Ping with an echo payload of size bytes (at least the
// per-call token), so the IP packet is size plus 28 (IPv4) or 48 (IPv6)
// bytes: PingSize(ctx, dst, 1452) sends and expects back whole 1500-byte
// IPv6 packets. A reply must carry the payload whole.
func (n *NS) PingSize(ctx context.Context, dst netip.Addr, size int) (time.Duration, error) {
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var echoType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		echoType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	err := n.Do(func() (err error) {
		c, err = icmp.ListenPacket(network, laddr)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%s: icmp socket: %w", n.Name, err)
	}
	defer c.Close()

	// A raw socket sees every ICMP message of the namespace: the id and
	// a per-call payload pick out ours.
	id := rand.IntN(0xffff) + 1
	token := fmt.Appendf(nil, "unmap-lab-ping-%016x", rand.Uint64())
	payload := append(token, bytes.Repeat([]byte{'.'}, max(0, size-len(token)))...)
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	for seq := 1; ; seq++ {
		msg := icmp.Message{Type: echoType, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}
		// The kernel fills in the ICMPv6 checksum of a raw socket.
		b, err := msg.Marshal(nil)
		if err != nil {
			return 0, err
		}
		sent := time.Now()
		if _, err := c.WriteTo(b, to); err != nil {
			return 0, fmt.Errorf("ping %s: %w", dst, err)
		}
		wait := sent.Add(200 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(wait) {
			wait = d
		}
		for {
			_ = c.SetReadDeadline(wait)
			m, from, err := c.ReadFrom(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("ping %s: %w", dst, err)
			}
			rm, err := icmp.ParseMessage(proto, buf[:m])
			if err != nil {
				continue
			}
			if rm.Type == replyType {
				if e, ok := rm.Body.(*icmp.Echo); ok && string(e.Data) == string(payload) {
					return time.Since(sent), nil
				}
				continue
			}
			if quoted := icmpErrorQuote(rm); quoted != nil && bytes.Contains(quoted, token) {
				return 0, fmt.Errorf("ping %s: %v from %v", dst, rm.Type, from)
			}
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("ping %s: no reply: %w", dst, ctx.Err())
		}
	}
}

// icmpErrorQuote returns the packet an ICMP error message quotes.
func icmpErrorQuote(m *icmp.Message) []byte {
	switch b := m.Body.(type) {
	case *icmp.DstUnreach:
		return b.Data
	case *icmp.TimeExceeded:
		return b.Data
	case *icmp.PacketTooBig:
		return b.Data
	case *icmp.ParamProb:
		return b.Data
	}
	return nil
}
