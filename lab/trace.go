package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// What proof 5 looks at: the hops traceroute6 lists, and the path MTU a
// host learns from a Packet Too Big.

// Traceroute6 runs the real traceroute6 (Debian's traceroute package) in
// n to dst and returns the first address that answered each hop, hop 1
// first (invalid for a hop none answered), and its output; Trace6 does
// the same in Go. UDP probes, `probes` a hop, one at a time (-N 1): each
// probe past the edge is a flow with a carrier port of its own at the
// relay (the lab's relay has 64, RelayCarrierPorts), and srv6
// rate-limits its port unreachables; at most 12 hops.
func (n *NS) Traceroute6(ctx context.Context, dst netip.Addr, probes int) ([]netip.Addr, []byte, error) {
	out, err := n.Output(ctx, "traceroute6", "-n", "-q", strconv.Itoa(probes), "-N", "1", "-w", "3", "-m", "12", dst.String())
	if err != nil {
		return nil, out, err
	}
	var hops []netip.Addr
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		var hop netip.Addr
		for _, w := range f[1:] { // "*" for a probe with no answer
			if a, err := netip.ParseAddr(w); err == nil {
				hop = a
				break
			}
		}
		hops = append(hops, hop)
	}
	return hops, out, nil
}

// WKP is a IPv4 address in the RFC 6052 well-known prefix 64:ff9b::/96,
// as the edge shows a router on the carrier path.
func WKP(a netip.Addr) netip.Addr {
	b := netip.MustParseAddr("64:ff9b::").As16()
	v := a.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

// TraceToSrv6 is what traceroute6 from the lan host to srv6 must list with
// unmap running: the edge, the carrier path's routers in 64:ff9b::/96
// (cgn, inet, the relay itself), inet's relay side, srv6.
func TraceToSrv6() []netip.Addr {
	return []netip.Addr{
		SitePrefix.Addr().Next(), // the edge's LAN address
		WKP(CGNEdgeAddr), WKP(InetCGNAddr), WKP(RelayAddr),
		InetRelay6Addr, Srv6Addr,
	}
}

// CheckHops compares hops with want.
func CheckHops(hops, want []netip.Addr) error {
	if len(hops) != len(want) {
		return fmt.Errorf("%d hops %v, want %v", len(hops), hops, want)
	}
	for i := range want {
		if hops[i] != want[i] {
			return fmt.Errorf("hop %d is %v, want %v (all: %v)", i+1, hops[i], want[i], hops)
		}
	}
	return nil
}

// Upload sends size random bytes over TCP from namespace from to a sink
// it starts in to at addr, and checks the sink's SHA-256 of what it got.
func Upload(ctx context.Context, from, to *NS, addr netip.AddrPort, size int) (time.Duration, error) {
	ln, err := to.Listen("tcp", addr.String())
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err == nil {
			c.Write(h.Sum(nil))
		}
	}()
	data := make([]byte, size)
	rand.Read(data)
	sum := sha256.Sum256(data)
	c, err := from.Dial(ctx, "tcp", addr.String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	start := time.Now()
	if _, err := c.Write(data); err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return 0, fmt.Errorf("digest: %w", err)
	}
	if !bytes.Equal(got, sum[:]) {
		return 0, errors.New("the sink's digest differs from the bytes sent")
	}
	return time.Since(start), nil
}

// RouteMTU is the path MTU n's kernel holds for dst (what `ip route get`
// shows as mtu: the route cache's metric, asked over netlink), 0 if it
// holds none (the interface's MTU applies).
func (n *NS) RouteMTU(ctx context.Context, dst netip.Addr) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	rs, err := n.nl.RouteGet(dst.AsSlice())
	if err != nil {
		return 0, fmt.Errorf("%s: route get %s: %w", n.Name, dst, err)
	}
	if len(rs) == 0 {
		return 0, fmt.Errorf("%s: no route to %s", n.Name, dst)
	}
	return rs[0].MTU, nil
}

// UploadPastNarrow uploads size bytes from the lan host to srvn across the
// 1400-byte link beyond the relay and checks the host learned that MTU.
func UploadPastNarrow(ctx context.Context, l *Lab, size int) (time.Duration, error) {
	d, err := Upload(ctx, l.NS(LAN), l.NS(SrvN), netip.AddrPortFrom(SrvNAddr, EchoPort+1), size)
	if err != nil {
		return d, err
	}
	mtu, err := l.NS(LAN).RouteMTU(ctx, SrvNAddr)
	if err != nil {
		return d, err
	}
	if mtu != NarrowMTU {
		return d, fmt.Errorf("the host's route to srvn has mtu %d, want %d", mtu, NarrowMTU)
	}
	return d, nil
}
