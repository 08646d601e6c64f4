package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/unmap-dev/unmap/lab"
)

// The measurements. Each runs from the lan host to the servers on srv6
// and returns its figures; a figure that cannot be measured is an error.

// goodput sends one TCP stream for d and returns what srv6 received, in
// bit/s, from its first byte to its last.
func goodput(ctx context.Context, lan *lab.NS, s *servers, d time.Duration) (float64, error) {
	return goodputTo(ctx, lan, s, netip.AddrPortFrom(lab.Srv6Addr, sinkPort), d)
}

// goodputTo is goodput to the sink s listens on at to.
func goodputTo(ctx context.Context, lan *lab.NS, s *servers, to netip.AddrPort, d time.Duration) (float64, error) {
	network := "tcp6"
	if to.Addr().Is4() {
		network = "tcp4"
	}
	c, err := lan.Dial(ctx, network, to.String())
	if err != nil {
		return 0, fmt.Errorf("goodput: %w", err)
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	end := time.Now().Add(d)
	_ = c.SetWriteDeadline(end.Add(10 * time.Second))
	for time.Now().Before(end) && ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			return 0, fmt.Errorf("goodput: send: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, fmt.Errorf("goodput: %w", err)
	}
	select {
	case st := <-s.streams:
		if st.err != nil {
			return 0, fmt.Errorf("goodput: receive: %w", st.err)
		}
		span := st.last.Sub(st.first)
		if st.bytes == 0 || span <= 0 {
			return 0, errors.New("goodput: the sink received nothing")
		}
		return float64(st.bytes*8) / span.Seconds(), nil
	case <-time.After(15 * time.Second):
		return 0, errors.New("goodput: the sink never saw the stream end")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// connectTimes opens n TCP connections one after another and returns how
// long each connect took (SYN sent to SYN/ACK back, as the client sees
// it). Entering the namespace is outside the timed span.
func connectTimes(ctx context.Context, lan *lab.NS, n int) ([]time.Duration, error) {
	to := netip.AddrPortFrom(lab.Srv6Addr, connectPort).String()
	out := make([]time.Duration, 0, n)
	for i := range n {
		var took time.Duration
		err := lan.Do(func() error {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var d net.Dialer
			t0 := time.Now()
			c, err := d.DialContext(cctx, "tcp6", to)
			took = time.Since(t0)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err != nil {
			return nil, fmt.Errorf("connect %d of %d: %w", i+1, n, err)
		}
		out = append(out, took)
	}
	return out, nil
}

// quantile of sorted durations, q in [0, 1] (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// firstPacketLoss opens n UDP flows at once, each from its own socket
// (its own source port) with one datagram, and counts those never
// answered by srv6's echo within wait. Nothing is resent: a first packet
// dropped while its flow is set up is lost.
func firstPacketLoss(ctx context.Context, lan *lab.NS, n int, wait time.Duration) (lost int, err error) {
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort))
	conns := make([]net.PacketConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := lan.ListenPacket("udp6", "[::]:0")
		if err != nil {
			return 0, fmt.Errorf("first packet: %w", err)
		}
		conns = append(conns, c)
	}
	run := rand.Uint64()
	msgs := make([][]byte, n)
	for i, c := range conns {
		msgs[i] = fmt.Appendf(nil, "first-%x-%d\n", run, i)
		if _, err := c.WriteTo(msgs[i], to); err != nil {
			return 0, fmt.Errorf("first packet %d: %w", i, err)
		}
	}
	answered := make(chan bool, n)
	deadline := time.Now().Add(wait)
	for i, c := range conns {
		go func() {
			buf := make([]byte, 256)
			_ = c.SetReadDeadline(deadline)
			for {
				m, _, err := c.ReadFrom(buf)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) {
						answered <- false
						return
					}
					continue
				}
				if string(buf[:m]) == string(msgs[i]) {
					answered <- true
					return
				}
			}
		}()
	}
	for range n {
		if !<-answered {
			lost++
		}
	}
	return lost, ctx.Err()
}

// largestPackets finds the largest IPv6 packet that crosses from the lan
// host to srv6 (up) and back (down).
func largestPackets(ctx context.Context, lan *lab.NS) (up, down int, err error) {
	c, err := lan.ListenPacket("udp6", "[::]:0")
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if err := noFragments(c); err != nil {
		return 0, 0, err
	}
	to := netip.AddrPortFrom(lab.Srv6Addr, probePort)
	id := rand.Uint32()
	for _, dir := range []struct {
		op  probeOp
		out *int
	}{{probeUp, &up}, {probeDown, &down}} {
		*dir.out, err = largest(1280, lab.MTU, func(size int) (bool, error) {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			id++
			return probeOnce(c, to, dir.op, size, id, 2, 250*time.Millisecond)
		})
		if err != nil {
			return 0, 0, fmt.Errorf("largest packet (%s): %w", dirName(dir.op), err)
		}
	}
	return up, down, nil
}

func dirName(op probeOp) string {
	if op == probeUp {
		return "up"
	}
	return "down"
}

// sortedCopy returns d sorted, leaving d alone.
func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
