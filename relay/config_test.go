package relay

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/config"
)

func TestExampleLoads(t *testing.T) {
	s, err := Load("../examples/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Sites[0].Prefix, netip.MustParsePrefix("2001:db8:5::/56"); got != want {
		t.Errorf("sites[0].prefix = %v, want %v", got, want)
	}
	if s.Sites[1].IPv4Ports.First != 1024 || s.Sites[0].MaxFlows != 65536 || s.Listen.Port() != 443 || s.Misses != (config.MissBound{Rate: 1000, Burst: 200}) {
		t.Errorf("parsed %+v", s)
	}
}

const base = `
listen: "[::]:443"
tls: {ca: ca.pem, cert: r.pem, key: r-key.pem}
interface: eth0
addresses: [198.51.100.6]
sites:
  - id: home
    prefix: 2001:db8:5::/56
    ipv4: 203.0.113.10
`

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "colour: blue\n", "relay.yaml: line 10: field colour not found in type relay.Config"},
		{"bad prefix", strings.Replace(base, "2001:db8:5::/56", "2001:db8::/129", 1), "relay.yaml: sites[0].prefix: 2001:db8::/129 is not a prefix"},
		{"host bits", strings.Replace(base, "2001:db8:5::/56", "2001:db8:5::1/56", 1), "relay.yaml: sites[0].prefix: 2001:db8:5::1/56 has host bits set (did you mean 2001:db8:5::/56?)"},
		{"v4 prefix", strings.Replace(base, "2001:db8:5::/56", "192.0.2.0/24", 1), "relay.yaml: sites[0].prefix: 192.0.2.0/24 is not an IPv6 prefix of /64 or shorter"},
		{"long prefix", strings.Replace(base, "2001:db8:5::/56", "2001:db8:5::/80", 1), "relay.yaml: sites[0].prefix: 2001:db8:5::/80 is not an IPv6 prefix of /64 or shorter"},
		{"site id", strings.Replace(base, "id: home", "id: Home_1", 1), `relay.yaml: sites[0].id: "Home_1" is not a site id (lowercase letters, digits and inner '-', 1 to 63 characters)`},
		{"v6 carrier address", strings.Replace(base, "[198.51.100.6]", "[2001:db8:1::2]", 1), "relay.yaml: addresses[0]: 2001:db8:1::2 is not IPv4 (carriers cross an IPv4 CGNAT)"},
		{"no addresses", strings.Replace(base, "addresses: [198.51.100.6]\n", "", 1), "relay.yaml: addresses: missing (the relay's IPv4 addresses for carriers)"},
		{"listen", strings.Replace(base, `"[::]:443"`, "relay:443", 1), "relay.yaml: listen: relay:443 is not an address:port"},
		{"no key", strings.Replace(base, ", key: r-key.pem", "", 1), "relay.yaml: tls.key: missing"},
		{"ports inverted", base + "carrier_ports: 30000-20000\n", `relay.yaml: carrier_ports: "30000-20000" starts after it ends`},
		{"ports hold listen", strings.Replace(base, "[::]:443", "[::]:4433", 1) + "carrier_ports: 4000-5000\n", "relay.yaml: carrier_ports: 4000-5000 contains the control port 4433 of listen"},
		{"system carrier ports", base + "carrier_ports: 400-30000\n", "relay.yaml: carrier_ports: 400-30000 holds system ports (below 1024): the datapath would take the relay's own services' packets for carriers'"},
		{"carrier address 0.0.0.0", strings.Replace(base, "[198.51.100.6]", "[0.0.0.0]", 1), "relay.yaml: addresses[0]: 0.0.0.0 is the unspecified address, not an address edges can send carriers to"},
		{"carrier address twice", strings.Replace(base, "[198.51.100.6]", "[198.51.100.6, 198.51.100.7, 198.51.100.6]", 1), "relay.yaml: addresses[2]: 198.51.100.6 is already addresses[0]"},
		{"carrier address multicast", strings.Replace(base, "[198.51.100.6]", "[224.0.0.1]", 1), "relay.yaml: addresses[0]: 224.0.0.1 is a multicast address, not an address edges can send carriers to"},
		{"site ipv4 is a carrier address", strings.Replace(base, "ipv4: 203.0.113.10", "ipv4: 198.51.100.6", 1), "relay.yaml: sites[0].ipv4: 198.51.100.6 is addresses[0], a carrier address of the relay"},
		{"site ipv4 0.0.0.0", strings.Replace(base, "ipv4: 203.0.113.10", "ipv4: 0.0.0.0", 1), "relay.yaml: sites[0].ipv4: 0.0.0.0 is the unspecified address, not a public address for a site"},
		{"site ipv4 broadcast", strings.Replace(base, "ipv4: 203.0.113.10", "ipv4: 255.255.255.255", 1), "relay.yaml: sites[0].ipv4: 255.255.255.255 is the broadcast address, not a public address for a site"},
		{"site ipv4 multicast", strings.Replace(base, "ipv4: 203.0.113.10", "ipv4: 239.1.2.3", 1), "relay.yaml: sites[0].ipv4: 239.1.2.3 is a multicast address, not a public address for a site"},
		{"quota past the table", base + "    max_flows: 9223372036854775807\n", "relay.yaml: sites[0].max_flows: 9223372036854775807 is more than the relay's flow table can ever hold (524288)"},
		{"relative pin path", base + "pin_path: pins\n", `relay.yaml: pin_path: "pins" is not an absolute path (a folder on the bpf filesystem, such as /sys/fs/bpf/unmap-relay)`},
		{"udp timeout", base + "timeouts: {udp: 30s}\n", "relay.yaml: timeouts.udp: 30s is below the minimum of 2m0s"},
		{"tcp timeout", base + "timeouts: {tcp_established: 1h}\n", "relay.yaml: timeouts.tcp_established: 1h0m0s is below the minimum of 2h4m0s"},
		{"duration", base + "timeouts: {udp: soon}\n", `relay.yaml: timeouts.udp: "soon" is not a duration like 30s or 2h4m`},
		{"duplicate id", base + "  - {id: home, prefix: \"2001:db8:6::/56\"}\n", `relay.yaml: sites[1].id: "home" is already sites[0]`},
		{"overlap", base + "  - {id: shop, prefix: \"2001:db8:5:80::/57\"}\n", "relay.yaml: sites[1].prefix: 2001:db8:5:80::/57 overlaps sites[0] (2001:db8:5::/56)"},
		{"shared ipv4", base + "  - {id: shop, prefix: \"2001:db8:6::/56\", ipv4: 203.0.113.10, ipv4_ports: 2000-3000}\n", "relay.yaml: sites[1].ipv4_ports: 2000-3000 of 203.0.113.10 overlaps sites[0] (1-65535)"},
		{"ports without ipv4", base + "  - {id: shop, prefix: \"2001:db8:6::/56\", ipv4_ports: 2000-3000}\n", "relay.yaml: sites[1].ipv4_ports: needs ipv4"},
		{"miss rate", base + "miss_limit: {rate: 2000000000}\n", "relay.yaml: miss_limit.rate: 2000000000 is not a rate from 1 to 1000000000 a second (0: default)"},
		{"miss burst", base + "miss_limit: {burst: -5}\n", "relay.yaml: miss_limit.burst: -5 is not a burst from 1 to 1000000 (0: default)"},
		{"negative quota", base + "    max_flows: -1\n", "relay.yaml: sites[0].max_flows: -1 is negative"},
		{"no sites", strings.SplitN(base, "sites:", 2)[0], "relay.yaml: sites: missing (a relay with no site serves nobody)"},
		{"repeated key", base + "addresses: [198.51.100.7]\n", "relay.yaml: line 10: mapping key \"addresses\" already defined at line 5"},
		{"wrong type", strings.Replace(base, "interface: eth0", "interface: [eth0]", 1), "relay.yaml: line 4: cannot unmarshal !!seq into string"},
		{"empty", "", "relay.yaml: empty file"},
		{"two documents", base + "---\nlisten: x\n", "relay.yaml: more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "relay.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("loaded; want error %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !os.IsNotExist(err) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}
