package forward

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// exchangeThrough has client connect to a listener of server's on to and
// the two exchange 50 MB each way, verified by hash; it returns the
// connect time.
func exchangeThrough(ctx context.Context, server, client *lab.NS, to netip.AddrPort) (time.Duration, error) {
	network := "tcp4"
	if to.Addr().Is6() {
		network = "tcp6"
	}
	ln, err := server.Listen(network, fmt.Sprintf(":%d", to.Port()))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return e2e.ExchangeOver(ctx, ln, client, to)
}
