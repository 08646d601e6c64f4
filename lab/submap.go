package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/portmap/pcp"
)

// SubMapTourPort is the port of the sub host's server that the tour's
// subscriber mapping row asks the relay to map.
const SubMapTourPort = 9300

// SubMapCheck is the row where a subscriber of the relay's CGNAT asks the
// relay by PCP for an inbound TCP port to a server of its own, which has
// sent nothing yet (so no mapping exists before the request), and srv4
// then reaches that server at the external address:port the relay
// granted, from a pool address, and is seen from srv4's own address.
func SubMapCheck(name string) Check {
	return Check{Name: name, Expect: Works, Timeout: 5 * time.Second, Run: func(ctx context.Context, e *Env) error {
		sub := e.Lab.NS(Sub)
		srv, err := sub.StartEcho(netip.AddrPortFrom(SubAddr, SubMapTourPort))
		if err != nil {
			return err
		}
		defer srv.Close()
		c, err := sub.dialMapping(RelaySubAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		cl := &pcp.Client{Conn: c, Self: SubAddr, Retry: 250 * time.Millisecond}
		m, err := cl.Map(ctx, 6, SubMapTourPort, 0, 120, pcp.NewNonce(), nil)
		if err != nil {
			return fmt.Errorf("PCP MAP to the relay: %w", err)
		}
		got := netip.AddrPortFrom(m.Map.ExternalAddr.Unmap(), m.Map.ExternalPort)
		if !SubPool4.Contains(got.Addr()) {
			return fmt.Errorf("the relay mapped %v, outside its pool %v", got, SubPool4)
		}
		return EchoCheck(name, Works, Srv4, "tcp", func(*Env) *EchoServer { return srv }, got, Srv4Addr).Run(ctx, e)
	}}
}
