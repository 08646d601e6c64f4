package cgnat_test

import (
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/cgnat"
	"github.com/unmap-dev/unmap/relay"
)

// TestExampleLoads: examples/relay-cgnat.yaml is a valid relay.yaml and
// says what it means to.
func TestExampleLoads(t *testing.T) {
	s, err := relay.Load("../examples/relay-cgnat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := s.CGNAT
	if c == nil || c.Interface != "eth1" || c.Datapath.PoolAddrs != 64 || c.Datapath.PoolFirst != netip.MustParseAddr("203.0.113.128") ||
		c.Datapath.Blocks != 64 || c.Quota != 4 || c.Timeouts != cgnat.DefaultTimeouts || c.Log != "/var/log/unmap/cgnat-blocks.log" ||
		!c.PortMap.PCP || !c.PortMap.NATPMP || c.PortMap.Policy.PerHost != 32 || c.PortMap.Policy.PerSite != 16384 ||
		len(c.PortMap.Policy.Allowed) != 1 || c.PortMap.Policy.Allowed[0] != c.Datapath.Inside {
		t.Fatalf("%+v", c)
	}
}
