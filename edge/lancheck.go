package edge

import (
	"fmt"
	"net/netip"

	"github.com/unmap-dev/unmap/config"
)

// checkForwardsOnLAN refuses port forwards to a host that is not on the
// LAN interface's IPv4 networks: the edge delivers a forwarded flow to
// the LAN, so any other address (the router itself, a WAN host, another
// network) is a mistake that would otherwise show only as a dead
// forward. Config validation cannot know the LAN's networks; the start
// does.
func checkForwardsOnLAN(fw []Forward, lan string) error {
	if len(fw) == 0 {
		return nil
	}
	nets, err := ifacePrefixes4(lan)
	if err != nil {
		return config.Errorf("lan_interface", "%s: %v", lan, err)
	}
	return forwardsOnLAN(fw, nets)
}

// forwardsOnLAN is checkForwardsOnLAN with the LAN's networks known.
func forwardsOnLAN(fw []Forward, nets []netip.Prefix) error {
	for i, f := range fw {
		field := fmt.Sprintf("inbound.forwards[%d].to", i)
		a := f.To.Addr()
		on := false
		for _, n := range nets {
			switch {
			case !n.Contains(a):
			case a == n.Addr():
				return config.Errorf(field, "%v is the edge's own LAN address, not a LAN host", a)
			case n.Bits() < 31 && (a == n.Masked().Addr() || a == lastAddr(n)):
				return config.Errorf(field, "%v is the network or broadcast address of %v, not a LAN host", a, n.Masked())
			default:
				on = true
			}
		}
		if !on {
			return config.Errorf(field, "%v is not on the LAN interface's networks %v", a, nets)
		}
	}
	return nil
}

// lastAddr is the last IPv4 address of p (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
