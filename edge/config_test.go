package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/session"
)

func TestExampleLoads(t *testing.T) {
	s, err := Load("../examples/edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.ServerName != "relay.example.net" || s.Keepalive != 15*time.Second || s.CarrierPorts.First != 61000 {
		t.Errorf("parsed %+v", s)
	}
	if len(s.Allow) != 3 || s.Allow[1].Proto != 0 || s.Allow[2].Proto != session.ICMPv6 || s.Allow[0].Hosts.Bits() != 128 {
		t.Errorf("allow = %+v", s.Allow)
	}
	if len(s.Forwards) != 2 || s.Forwards[1].Ports.Len() != 10 || s.Forwards[1].To.Port() != 51820 {
		t.Errorf("forwards = %+v", s.Forwards)
	}
	if s.Misses != (config.MissBound{Rate: 1000, Burst: 200}) {
		t.Errorf("miss_limit = %+v", s.Misses)
	}
	if s.Timers.TCPEstablished != 124*time.Minute {
		t.Errorf("tcp_established = %v", s.Timers.TCPEstablished)
	}
}

const base = `
site: home
relay: "[2001:db8:1::2]:443"
tls: {ca: ca.pem, cert: e.pem, key: e-key.pem}
lan_interface: eth1
wan_interface: eth0
`

func TestServerNameFromRelay(t *testing.T) {
	c := Config{Site: "home", Relay: "[2001:db8:1::2]:443", TLS: config.TLSFiles{CA: "a", Cert: "b", Key: "c"}, LAN: "a", WAN: "b"}
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.ServerName != "2001:db8:1::2" {
		t.Errorf("server name %q", s.ServerName)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "lan: eth2\n", "edge.yaml: line 7: field lan not found in type edge.Config"},
		{"no site", strings.Replace(base, "site: home\n", "", 1), `edge.yaml: site: "" is not a site id (lowercase letters, digits and inner '-', 1 to 63 characters)`},
		{"relay no port", strings.Replace(base, `"[2001:db8:1::2]:443"`, "relay.example.net", 1), `edge.yaml: relay: "relay.example.net" is not host:port`},
		{"relay port 0", strings.Replace(base, `:443"`, `:0"`, 1), `edge.yaml: relay: "[2001:db8:1::2]:0" is not host:port`},
		{"no ca", strings.Replace(base, "ca: ca.pem, ", "", 1), "edge.yaml: tls.ca: missing (the CA certificate that signs the peer)"},
		{"same interfaces", strings.Replace(base, "wan_interface: eth0", "wan_interface: eth1", 1), "edge.yaml: wan_interface: is the same interface as lan_interface (eth1)"},
		{"no wan", strings.Replace(base, "wan_interface: eth0\n", "", 1), "edge.yaml: wan_interface: missing"},
		{"small range", base + "carrier_ports: 61000-61010\n", "edge.yaml: carrier_ports: 61000-61010 holds 11 ports; give at least 64"},
		{"port zero", base + "carrier_ports: 0-100\n", `edge.yaml: carrier_ports: "0-100" is not a port range like 40000-49999`},
		{"all ports", base + "carrier_ports: 1-65535\n", "edge.yaml: carrier_ports: 1-65535 holds system ports (below 1024), which the router's own services use and a CGNAT maps only to system ports"},
		{"too many ports", base + "carrier_ports: 1024-65535\n", "edge.yaml: carrier_ports: 1024-65535 holds 64512 ports; give at most 32768 (the edge reserves them all from the router's own sockets)"},
		{"relative pin path", base + "pin_path: pins\n", `edge.yaml: pin_path: "pins" is not an absolute path (a folder on the bpf filesystem, such as /sys/fs/bpf/unmap/edge-home)`},
		{"forward to 0.0.0.0", base + "inbound: {forwards: [{proto: tcp, port: \"80\", to: \"0.0.0.0:80\"}]}\n", "edge.yaml: inbound.forwards[0].to: 0.0.0.0:80 is the unspecified address, not a LAN host"},
		{"forward to loopback", base + "inbound: {forwards: [{proto: tcp, port: \"80\", to: \"127.0.0.1:80\"}]}\n", "edge.yaml: inbound.forwards[0].to: 127.0.0.1:80 is a loopback address, not a LAN host"},
		{"keepalive", base + "keepalive: 30s\n", "edge.yaml: keepalive: 30s is above 25s, too slow for a CGNAT with a 30 s UDP timeout"},
		{"miss rate", base + "miss_limit: {rate: -1}\n", "edge.yaml: miss_limit.rate: -1 is not a rate from 1 to 1000000000 a second (0: default)"},
		{"transitory", base + "timeouts: {tcp_transitory: 1m}\n", "edge.yaml: timeouts.tcp_transitory: 1m0s is below the minimum of 4m0s"},
		{"allow proto", base + "inbound: {allow: [{proto: sctp, hosts: \"2001:db8:5::1\"}]}\n", `edge.yaml: inbound.allow[0].proto: "sctp" is not tcp, udp, icmp or any`},
		{"allow hosts", base + "inbound: {allow: [{proto: tcp, hosts: \"2001:db8:5::/200\"}]}\n", "edge.yaml: inbound.allow[0].hosts: 2001:db8:5::/200 is not a prefix"},
		{"allow bare host", base + "inbound: {allow: [{proto: tcp, hosts: nas}]}\n", "edge.yaml: inbound.allow[0].hosts: nas is not an IP address"},
		{"icmp ports", base + "inbound: {allow: [{proto: icmp, hosts: \"2001:db8:5::1\", ports: \"80\"}]}\n", "edge.yaml: inbound.allow[0].ports: ports need proto tcp or udp, not icmp"},
		{"forward any", base + "inbound: {forwards: [{proto: any, port: \"80\", to: \"192.0.2.2:80\"}]}\n", `edge.yaml: inbound.forwards[0].proto: "any" is not tcp or udp`},
		{"forward v6", base + "inbound: {forwards: [{proto: tcp, port: \"80\", to: \"[2001:db8:5::2]:80\"}]}\n", "edge.yaml: inbound.forwards[0].to: [2001:db8:5::2]:80 is not an IPv4 LAN host (forwards serve the site's public IPv4)"},
		{"forward past end", base + "inbound: {forwards: [{proto: udp, port: \"100-200\", to: \"192.0.2.2:65500\"}]}\n", "edge.yaml: inbound.forwards[0].to: port 65500 plus the 101 ports of the range runs past 65535"},
		{"forward overlap", base + "inbound: {forwards: [{proto: tcp, port: \"80-90\", to: \"192.0.2.2:80\"}, {proto: tcp, port: \"85\", to: \"192.0.2.3:80\"}]}\n", "edge.yaml: inbound.forwards[1].port: 85 overlaps inbound.forwards[0] (80-90)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edge.yaml")
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
