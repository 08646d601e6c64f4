package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/lab"
)

// udpRTT sends n datagrams one after another on one UDP socket (one
// flow: through unmap the first opens it, the rest take the established
// path) to srv6's echo and returns each round trip. A datagram not
// echoed within wait is counted as lost and left out of the times; more
// than a tenth lost is an error, as the times would then say little.
func udpRTT(ctx context.Context, lan *lab.NS, n int, wait time.Duration) (rtts []time.Duration, lost int, err error) {
	c, err := lan.Dial(ctx, "udp6", netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String())
	if err != nil {
		return nil, 0, fmt.Errorf("rtt: %w", err)
	}
	defer c.Close()
	run := rand.Uint64()
	buf := make([]byte, 256)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		msg := fmt.Appendf(nil, "rtt-%x-%d\n", run, i)
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, 0, fmt.Errorf("rtt %d of %d: %w", i+1, n, err)
		}
		_ = c.SetReadDeadline(t0.Add(wait))
		for {
			m, err := c.Read(buf)
			if err == nil && string(buf[:m]) == string(msg) {
				rtts = append(rtts, time.Since(t0))
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				lost++
				break
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				continue // an ICMP error for an earlier datagram
			}
			if err != nil {
				return nil, 0, err
			}
			// an echo of an earlier datagram, late: keep waiting
		}
	}
	if lost*10 > n {
		return nil, lost, fmt.Errorf("rtt: %d of %d datagrams not echoed within %v", lost, n, wait)
	}
	return rtts, lost, nil
}
