package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/portmap/natpmp"
	"github.com/unmap-dev/unmap/portmap/pcp"
)

// Ports the tour's mapping rows ask the edge for (Deploy switches port
// mapping on).
const (
	NATPMPTourPort = 9200
	PCPTourPort    = 9201
)

// MapCheck is a row where the LAN host asks the edge for an inbound port
// of the site's public IPv4 to its echo port — by NAT-PMP (UDP) or PCP
// (TCP) — and srv4 then reaches the host's echo server through it, seen
// from srv4's own address.
func MapCheck(name, protocol string, port uint16) Check {
	network := "udp"
	if protocol == "pcp" {
		network = "tcp"
	}
	return Check{Name: name, Expect: Works, Timeout: 5 * time.Second, Run: func(ctx context.Context, e *Env) error {
		got, err := e.Lab.NS(LAN).askMapping(ctx, protocol, port)
		if err != nil {
			return err
		}
		if got != netip.AddrPortFrom(SitePublic4, port) {
			return fmt.Errorf("%s mapped %v, want %v", protocol, got, netip.AddrPortFrom(SitePublic4, port))
		}
		return EchoCheck(name, Works, Srv4, network, func(e *Env) *EchoServer { return e.LAN }, got, Srv4Addr).Run(ctx, e)
	}}
}

// askMapping sends one NAT-PMP (UDP) or PCP (TCP) request for port to
// EchoPort from the namespace to the edge's LAN address, and returns
// the external endpoint granted. The socket is made inside the
// namespace; each try waits 250 ms.
func (n *NS) askMapping(ctx context.Context, protocol string, port uint16) (netip.AddrPort, error) {
	c, err := n.dialMapping(EdgeLANAddr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	if protocol == "pcp" {
		cl := &pcp.Client{Conn: c, Self: LANAddr, Retry: 250 * time.Millisecond}
		m, err := cl.Map(ctx, 6, EchoPort, port, 120, pcp.NewNonce(), func(m *pcp.Message) { m.PreferFailure = true })
		if err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(m.Map.ExternalAddr, m.Map.ExternalPort), nil
	}
	req := (&natpmp.Request{Opcode: natpmp.OpMapUDP, InternalPort: EchoPort, ExternalPort: port, Lifetime: 120}).Append(nil)
	buf := make([]byte, 64)
	for ctx.Err() == nil {
		if _, err := c.Write(req); err != nil {
			return netip.AddrPort{}, err
		}
		_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		k, err := c.Read(buf)
		if err != nil {
			continue
		}
		r, err := natpmp.ParseResponse(buf[:k])
		if err != nil || r.Opcode != natpmp.OpMapUDP {
			continue
		}
		if r.Result != natpmp.Success {
			return netip.AddrPort{}, fmt.Errorf("NAT-PMP result %d", r.Result)
		}
		return netip.AddrPortFrom(SitePublic4, r.ExternalPort), nil
	}
	return netip.AddrPort{}, ctx.Err()
}

// dialMapping is a UDP socket made in the namespace to a port mapping
// server's port (PCP's and NAT-PMP's, 5351) at server.
func (n *NS) dialMapping(server netip.Addr) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := n.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, pcp.ServerPort)))
		return err
	})
	return c, err
}
