package cgnat

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/config"
)

var relayFields = Relay{
	Interface:    "ext0",
	Addresses:    []netip.Addr{netip.MustParseAddr("192.0.2.1")},
	CarrierPorts: config.PortRange{First: 20000, Last: 39999},
	SiteIPv4:     map[string]netip.Addr{"sites[1].ipv4": netip.MustParseAddr("192.0.2.20")},
}

func good() Config {
	return Config{Interface: "sub0", Inside: "100.64.0.0/16", Gateway: "100.64.0.1", Pool: "192.0.2.0/28",
		Ports: "40960-65535", Log: "/var/log/unmap/cgnat.log"}
}

// TestParseDefaults: a minimal section gets the defaults (512
// ports a block, four a subscriber, endpoint-independent filtering, the
// RFC timeouts) and the datapath's geometry.
func TestParseDefaults(t *testing.T) {
	c := good()
	s, err := c.Parse("cgnat", relayFields)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Datapath
	if d.BlockSize() != 512 || s.Quota != 4 || d.Filter != 0 || d.PoolAddrs != 16 || d.Blocks != 48 || d.PortLo != 40960 ||
		s.Timeouts != DefaultTimeouts || s.MaxMappings != 1<<20 {
		t.Fatalf("%+v", s)
	}
	var none Config
	if s, err := none.Parse("cgnat", relayFields); s != nil || err != nil {
		t.Fatalf("no section: %v %v", s, err)
	}
}

// TestParseRefuses: each wrong field is an error naming it, and an
// overlap names both sides.
func TestParseRefuses(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		want []string
	}{
		{func(c *Config) { c.Ports = "30000-40000" }, []string{"cgnat.pool", "carrier_ports", "addresses[0]"}},
		{func(c *Config) { c.Pool = "192.0.2.16/28" }, []string{"cgnat.pool", "sites[1].ipv4"}},
		{func(c *Config) { c.BlocksPerSubscriber = 5 }, []string{"cgnat.blocks_per_subscriber"}},
		{func(c *Config) { c.Pool = "192.0.2.5"; c.Ports = "40960-41983"; c.BlocksPerSubscriber = 3 }, []string{"cgnat.blocks_per_subscriber", "pool's 2 blocks"}},
		{func(c *Config) { c.BlockSize = 1000 }, []string{"cgnat.block_size"}},
		{func(c *Config) { c.Filtering = "symmetric" }, []string{"cgnat.filtering"}},
		{func(c *Config) { c.Interface = "ext0" }, []string{"cgnat.interface"}},
		{func(c *Config) { c.Log = "" }, []string{"cgnat.log"}},
		{func(c *Config) { c.Log = "cgnat.log" }, []string{"cgnat.log", "absolute"}},
		{func(c *Config) { c.Timeouts.UDP = "30s" }, []string{"cgnat.timeouts.udp"}},
		{func(c *Config) { c.Deterministic = true }, []string{"cgnat.deterministic"}},
		{func(c *Config) { c.Pool = "100.64.1.0/24" }, []string{"cgnat", "overlap"}},
		{func(c *Config) { c.Pool = "192.0.2.9/28" }, []string{"cgnat.pool", "host bits"}},
		{func(c *Config) { c.Ports = "80-2000" }, []string{"cgnat.ports"}},
		{func(c *Config) { c.Gateway = "10.0.0.1" }, []string{"cgnat.gateway"}},
		{func(c *Config) { c.NAT64Prefix = "64:ff9b::/96" }, []string{"cgnat.nat64_prefix", "without inside6"}},
		{func(c *Config) { c.Inside6 = "2001:db8::/40" }, []string{"cgnat.inside6", "/44 to /64"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/72" }, []string{"cgnat.inside6"}},
		{func(c *Config) { c.Inside6 = "100.64.0.0/16" }, []string{"cgnat.inside6"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::1/56" }, []string{"cgnat.inside6", "host bits"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/56"; c.NAT64Prefix = "64:ff9b::/64" }, []string{"cgnat.nat64_prefix", "only /96"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/56"; c.NAT64Prefix = "2001:db8:64:1::/96" }, []string{"cgnat.nat64_prefix", "overlaps inside6"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/56"; c.NAT64Prefix = "192.0.2.0/24" }, []string{"cgnat.nat64_prefix"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/56"; c.NAT64Prefix = "::ffff:0:0/96" }, []string{"cgnat.nat64_prefix"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/56"; c.Deterministic = true }, []string{"cgnat.deterministic", "NAT64"}},
		{func(c *Config) { c.MoreInterfaces = []string{"sub0"} }, []string{"cgnat.more_interfaces[0]"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/56"; c.NAT64MTU = 1000 }, []string{"cgnat.nat64_mtu", "1280 to 9000"}},
		{func(c *Config) { c.NAT64MTU = 1500 }, []string{"cgnat.nat64_mtu", "without inside6"}},
	} {
		cfg := good()
		c.edit(&cfg)
		_, err := cfg.Parse("cgnat", relayFields)
		if err == nil {
			t.Errorf("%+v: no error", cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %q does not say %q", cfg, err, w)
			}
		}
	}
}

// TestParseNAT64: inside6 alone is NAT64 on the well-known prefix; a
// network-specific /96 is taken as written.
func TestParseNAT64(t *testing.T) {
	c := good()
	c.Inside6 = "2001:db8:64::/56"
	s, err := c.Parse("cgnat", relayFields)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Datapath; !d.NAT64() || d.Prefix().String() != "64:ff9b::/96" || d.Subscribers6() != 256 {
		t.Fatalf("%+v", d)
	}
	c.NAT64Prefix = "2001:db8:ff::/96"
	c.MoreInterfaces = []string{"sub6"}
	if s, err = c.Parse("cgnat", relayFields); err != nil || s.Datapath.Prefix().String() != "2001:db8:ff::/96" || s.MoreInterfaces[0] != "sub6" {
		t.Fatalf("%+v %v", s, err)
	}
}

// FuzzParse: any section parses or is refused, without a panic, and what
// parses is a datapath configuration the loader accepts.
func FuzzParse(f *testing.F) {
	f.Add("100.64.0.0/16", "192.0.2.0/28", "40960-65535", 512, 4, "")
	f.Add("100.64.0.0/30", "192.0.2.1-192.0.2.3", "1024", 64, 1, "address-dependent")
	f.Fuzz(func(t *testing.T, inside, pool, ports string, size, quota int, filter string) {
		c := Config{Interface: "sub0", Inside: inside, Pool: pool, Ports: ports, BlockSize: size,
			BlocksPerSubscriber: quota, Filtering: filter, Log: "/l"}
		s, err := c.Parse("cgnat", relayFields)
		if err != nil {
			return
		}
		if err := s.Datapath.Validate(); err != nil {
			t.Fatalf("parsed but invalid: %v", err)
		}
	})
}
