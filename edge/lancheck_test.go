package edge

import (
	"net/netip"
	"testing"
)

// TestForwardsOnLAN: at start, a port forward must lead to a host of the
// LAN interface's IPv4 networks: not elsewhere, not the edge itself,
// not the network's broadcast or network address.
func TestForwardsOnLAN(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}
	fw := func(to string) []Forward { return []Forward{{Proto: 6, To: netip.MustParseAddrPort(to)}} }
	if err := forwardsOnLAN(fw("192.168.1.20:80"), nets); err != nil {
		t.Errorf("a LAN host: %v", err)
	}
	for _, to := range []string{"192.168.2.20:80", "8.8.8.8:53", "192.168.1.1:80", "192.168.1.255:80", "192.168.1.0:80"} {
		if err := forwardsOnLAN(fw(to), nets); err == nil {
			t.Errorf("forward to %s accepted", to)
		} else {
			t.Logf("%s: %v", to, err)
		}
	}
}
