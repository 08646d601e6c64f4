package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// The traceroute the tour runs, in Go, so that `unmap lab` needs no
// program Go does not bring. It probes as traceroute6 -n -q probes -N 1
// -w 3 -m 12 does: UDP datagrams one at a time, each to the next port from
// 33434 up (so each is a flow of its own through the edge and the relay),
// hop limit 1, 2, ... until the destination answers.
const (
	traceFirstPort = 33434
	traceMaxHops   = 12
	traceWait      = 3 * time.Second
)

// Trace6 traces the route from n to dst with probes UDP probes a hop and
// returns the first address that answered each hop, hop 1 first (invalid
// for a hop none answered), and a listing in traceroute6's layout. A time
// exceeded names a router; a destination unreachable (port unreachable
// from dst, as a UDP probe to a closed port gets) ends the trace.
func (n *NS) Trace6(ctx context.Context, dst netip.Addr, probes int) ([]netip.Addr, []byte, error) {
	if !dst.Is6() || dst.Is4In6() {
		return nil, nil, fmt.Errorf("trace %s: not an IPv6 address", dst)
	}
	var (
		ic *icmp.PacketConn
		uc net.PacketConn
	)
	err := n.Do(func() (err error) {
		if ic, err = icmp.ListenPacket("ip6:ipv6-icmp", "::"); err != nil {
			return err
		}
		if uc, err = net.ListenPacket("udp6", "[::]:0"); err != nil {
			ic.Close()
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: trace sockets: %w", n.Name, err)
	}
	defer ic.Close()
	defer uc.Close()
	// Only the errors a probe can draw reach this socket.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeTimeExceeded)
	f.Accept(ipv6.ICMPTypeDestinationUnreachable)
	if err := ic.IPv6PacketConn().SetICMPFilter(&f); err != nil {
		return nil, nil, fmt.Errorf("%s: trace: icmp filter: %w", n.Name, err)
	}
	probe := tracer{ic: ic, uc: uc, dst: dst, lport: uint16(uc.LocalAddr().(*net.UDPAddr).Port)}
	hl := ipv6.NewPacketConn(uc)

	var out bytes.Buffer
	fmt.Fprintf(&out, "traceroute to %s, %d hops max, %d probes a hop\n", dst, traceMaxHops, probes)
	var hops []netip.Addr
	port := traceFirstPort
	for hop := 1; hop <= traceMaxHops; hop++ {
		if err := hl.SetHopLimit(hop); err != nil {
			return hops, out.Bytes(), fmt.Errorf("trace: hop limit %d: %w", hop, err)
		}
		fmt.Fprintf(&out, "%2d", hop)
		var first netip.Addr
		end := false
		for range probes {
			a, err := probe.send(ctx, uint16(port))
			port++
			if err != nil {
				return hops, out.Bytes(), err
			}
			if !a.from.IsValid() {
				out.WriteString("  *")
				continue
			}
			if !first.IsValid() {
				first = a.from
			}
			fmt.Fprintf(&out, "  %s  %.3f ms%s", a.from, float64(a.rtt.Microseconds())/1000, a.mark)
			end = end || a.unreach
		}
		out.WriteByte('\n')
		hops = append(hops, first)
		if end {
			break
		}
	}
	return hops, out.Bytes(), nil
}

// tracer sends one probe at a time and waits for the error it draws.
type tracer struct {
	ic    *icmp.PacketConn
	uc    net.PacketConn
	dst   netip.Addr
	lport uint16
}

// answer is what one probe drew: nothing (from invalid), a time
// exceeded, or a destination unreachable (unreach; mark is traceroute's
// annotation for codes other than port unreachable).
type answer struct {
	from    netip.Addr
	rtt     time.Duration
	unreach bool
	mark    string
}

func (t tracer) send(ctx context.Context, port uint16) (answer, error) {
	sent := time.Now()
	payload := fmt.Appendf(nil, "unmap-lab-trace-%d", port)
	if _, err := t.uc.WriteTo(payload, &net.UDPAddr{IP: t.dst.AsSlice(), Port: int(port)}); err != nil {
		return answer{}, fmt.Errorf("trace: probe to port %d: %w", port, err)
	}
	until := sent.Add(traceWait)
	if d, ok := ctx.Deadline(); ok && d.Before(until) {
		until = d
	}
	buf := make([]byte, 1500)
	for {
		_ = t.ic.SetReadDeadline(until)
		n, from, err := t.ic.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if ctx.Err() != nil {
				return answer{}, fmt.Errorf("trace: %w", ctx.Err())
			}
			return answer{}, nil
		}
		if err != nil {
			return answer{}, fmt.Errorf("trace: %w", err)
		}
		m, err := icmp.ParseMessage(ipv6.ICMPTypeEchoReply.Protocol(), buf[:n])
		if err != nil || !t.quotesProbe(icmpErrorQuote(m), port) {
			continue
		}
		a := answer{rtt: time.Since(sent)}
		if ip, ok := from.(*net.IPAddr); ok {
			a.from, _ = netip.AddrFromSlice(ip.IP)
		}
		if m.Type == ipv6.ICMPTypeDestinationUnreachable {
			a.unreach = true
			a.mark = unreachMark(m.Code)
		}
		return a, nil
	}
}

// quotesProbe reports whether an ICMPv6 error's quoted packet is the
// probe to port: UDP (no extension header) from this tracer's port to dst.
func (t tracer) quotesProbe(q []byte, port uint16) bool {
	const ip6, udp = 40, 8
	if len(q) < ip6+udp || q[0]>>4 != 6 || q[6] != 17 {
		return false
	}
	if netip.AddrFrom16([16]byte(q[24:40])) != t.dst {
		return false
	}
	return binary.BigEndian.Uint16(q[ip6:]) == t.lport && binary.BigEndian.Uint16(q[ip6+2:]) == port
}

// unreachMark is traceroute's annotation of a destination unreachable
// code (RFC 4443): none for port unreachable, the normal end.
func unreachMark(code int) string {
	switch code {
	case 4:
		return ""
	case 0:
		return " !N"
	case 1:
		return " !X"
	case 3:
		return " !H"
	}
	return fmt.Sprintf(" !<%d>", code)
}
