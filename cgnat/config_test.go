package cgnat

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/config"
)

var relayFields = Relay{
	Interface:    "ext0",
	Addresses:    []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:1::1")},
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
		s.Timeouts != DefaultTimeouts || s.MaxMappings != 1<<20 || s.PortMap.On() {
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
		{func(c *Config) { c.Log = "syslog+udp://" }, []string{"cgnat.log", "HOST:PORT"}},
		{func(c *Config) { c.Log = "syslog+udp://:514" }, []string{"cgnat.log", "HOST:PORT"}},
		{func(c *Config) { c.Log = "syslog+tcp://192.0.2.53:99999" }, []string{"cgnat.log", "port"}},
		{func(c *Config) { c.Log = "syslog+unix://dev/log" }, []string{"cgnat.log", "absolute path"}},
		{func(c *Config) { c.Log = "syslog+udp://192.0.2.53?facility=kern" }, []string{"cgnat.log", "facility"}},
		{func(c *Config) { c.Log = "syslog+udp://192.0.2.53?level=info" }, []string{"cgnat.log", "unknown parameter"}},
		{func(c *Config) { c.Log = "syslog://192.0.2.53" }, []string{"cgnat.log", "syslog+udp"}},
		{func(c *Config) { c.Timeouts.UDP = "30s" }, []string{"cgnat.timeouts.udp"}},
		{func(c *Config) { c.Deterministic = true }, []string{"cgnat.deterministic"}},
		{func(c *Config) { c.Pool = "100.64.1.0/24" }, []string{"cgnat.pool", "overlaps", "cgnat.inside"}},
		{func(c *Config) { c.Pool = "100.63.255.254-100.64.0.1" }, []string{"cgnat.pool", "overlaps", "cgnat.inside"}},
		{func(c *Config) { c.Inside = "192.0.2.0/27"; c.Gateway = "" }, []string{"cgnat.pool", "overlaps", "cgnat.inside"}},
		{func(c *Config) { c.Inside = "192.0.2.16/28"; c.Gateway = "" }, []string{"cgnat.inside", "sites[1].ipv4"}},
		{func(c *Config) { c.Inside = "192.0.2.0/31"; c.Gateway = ""; c.Pool = "198.51.100.0/28" }, []string{"cgnat.inside", "addresses[0]"}},
		{func(c *Config) { c.Deterministic = true; c.Inside = "100.64.0.0/16"; c.BlocksPerSubscriber = 1 }, []string{"cgnat.deterministic"}},
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
		{func(c *Config) { c.Inside6 = "2001:db8:1::/56" }, []string{"cgnat.inside6", "addresses[1]"}},
		{func(c *Config) { c.Inside6 = "2001:db8:64::/56"; c.NAT64Prefix = "2001:db8:1::/96" }, []string{"cgnat.nat64_prefix", "addresses[1]"}},
		{func(c *Config) { c.MoreInterfaces = []string{"ext0"} }, []string{"cgnat.more_interfaces[0]", "interface too"}},
		{func(c *Config) { c.PortMapping = PortMapping{PCP: true, PerSubscriber: 10, Total: 5} }, []string{"cgnat.port_mapping.per_subscriber"}},
		{func(c *Config) { c.PortMapping = PortMapping{NATPMP: true, Total: 1 << 21} }, []string{"cgnat.port_mapping.total"}},
		{func(c *Config) { c.PortMapping = PortMapping{PCP: true, MinLifetime: "1h", MaxLifetime: "10m"} }, []string{"cgnat.port_mapping.max_lifetime"}},
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

// TestParseSyslog: cgnat.log's syslog forms: the transport, the address
// (514 by default), the facility (local0 by default).
func TestParseSyslog(t *testing.T) {
	for in, want := range map[string]SyslogTo{
		"syslog+udp://192.0.2.53":                       {"udp", "192.0.2.53:514", 16},
		"syslog+tcp://[2001:db8::53]:6514":              {"tcp", "[2001:db8::53]:6514", 16},
		"syslog+unix:///dev/log?facility=daemon":        {"unixgram", "/dev/log", 3},
		"syslog+udp://logs.example:514?facility=local7": {"udp", "logs.example:514", 23},
	} {
		got, err := ParseSyslog(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", in, got, err, want)
		}
		c := good()
		c.Log = in
		if _, err := c.Parse("cgnat", relayFields); err != nil {
			t.Errorf("cgnat.log %s: %v", in, err)
		}
	}
}

// FuzzParseSyslog: any cgnat.log string is a syslog destination or an
// error, without a panic; one that parses names a transport and an
// address the dialer takes.
func FuzzParseSyslog(f *testing.F) {
	for _, s := range []string{"syslog+udp://192.0.2.53", "syslog+tcp://[2001:db8::53]:6514?facility=local7",
		"syslog+unix:///dev/log", "syslog+udp://h:0", "syslog+unix://x/y", "syslog+tcp://h:1?facility=a&facility=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		to, err := ParseSyslog(s)
		if err != nil {
			return
		}
		switch to.Network {
		case "udp", "tcp":
			if _, _, err := net.SplitHostPort(to.Addr); err != nil {
				t.Fatalf("%q: address %q: %v", s, to.Addr, err)
			}
		case "unixgram":
			if !strings.HasPrefix(to.Addr, "/") {
				t.Fatalf("%q: socket %q", s, to.Addr)
			}
		default:
			t.Fatalf("%q: network %q", s, to.Network)
		}
		if to.Facility > 23 {
			t.Fatalf("%q: facility %d", s, to.Facility)
		}
	})
}
