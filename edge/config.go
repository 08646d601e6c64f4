package edge

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session"
)

// Config is edge.yaml. Fields are the file's text; Validate parses them
// into Settings. A zero value of an optional field means its default.
type Config struct {
	Site          string           `yaml:"site"`          // site id; must match the certificate
	Relay         string           `yaml:"relay"`         // control endpoint of the relay, host:port
	ServerName    string           `yaml:"server_name"`   // TLS name of the relay; default: the host of Relay
	TLS           config.TLSFiles  `yaml:"tls"`           // edge certificate, key, and the CA of the relay
	LAN           string           `yaml:"lan_interface"` // interface toward the site's hosts
	WAN           string           `yaml:"wan_interface"` // interface toward the upstream CGNAT
	CarrierPorts  string           `yaml:"carrier_ports"` // source ports E for carriers; default 61000-64999
	Keepalive     string           `yaml:"keepalive"`     // control channel keepalive; default 15s, at most 25s
	PinPath       string           `yaml:"pin_path"`      // bpffs folder for pinned maps and links; default /sys/fs/bpf/unmap/edge-<site>
	Timeouts      config.Timeouts  `yaml:"timeouts"`
	Inbound       Inbound          `yaml:"inbound"`
	MissLimit     config.MissLimit `yaml:"miss_limit"`     // slow-path packets per LAN /64 or IPv4 host, and from the WAN per source
	MetricsListen string           `yaml:"metrics_listen"` // host:port of the Prometheus /metrics server; default: none. Unauthenticated: bind it to localhost or a management network
	User          string           `yaml:"user"`           // become this user (name or uid) once set up; default: stay root, with only the capabilities still needed

	// Bounds on inbound flows (what an Internet host can make the agent
	// hold for a site): config.InboundLimits.
	InboundLimits config.InboundLimits `yaml:"inbound_limits"`

	PortMapping PortMapping `yaml:"port_mapping"` // PCP, NAT-PMP and UPnP IGD on the LAN (portmap_config.go)
}

// Inbound is the site's policy for flows the Internet opens. Anything it
// does not name is refused (and counted).
type Inbound struct {
	Allow    []AllowRule   `yaml:"allow"`    // IPv6 (or IPv4) flows to LAN hosts
	Forwards []ForwardRule `yaml:"forwards"` // ports of the site's public IPv4 forwarded to LAN hosts
}

// AllowRule accepts inbound flows of Proto to Hosts on Ports.
type AllowRule struct {
	Proto string `yaml:"proto"` // tcp, udp, icmp or any
	Hosts string `yaml:"hosts"` // an address or prefix of the site
	Ports string `yaml:"ports"` // port range; empty means all (not for icmp)
}

// ForwardRule sends inbound flows to Port of the site's public IPv4 on to
// To, a LAN host's address:port.
type ForwardRule struct {
	Proto string `yaml:"proto"` // tcp or udp
	Port  string `yaml:"port"`  // a port or range of the public IPv4
	To    string `yaml:"to"`    // LAN host address:port (the first port, for a range)
}

// Settings is a validated Config.
type Settings struct {
	Site          string
	Relay         string
	ServerName    string
	TLS           config.TLSFiles
	LAN, WAN      string
	CarrierPorts  config.PortRange
	Keepalive     time.Duration
	PinPath       string
	Timers        config.Timers
	Misses        config.MissBound
	Allow         []Allow
	Forwards      []Forward
	User          string // empty: stay root
	MetricsListen string // empty: no /metrics

	// Inbound flow bounds, defaults filled in.
	Inbound config.InboundBounds

	PortMap PortMap // port mapping on request, defaults filled in
}

// Allow is a parsed AllowRule; Proto 0 means any protocol.
type Allow struct {
	Proto session.Proto
	Hosts netip.Prefix
	Ports config.PortRange
}

// Forward is a parsed ForwardRule.
type Forward struct {
	Proto session.Proto
	Ports config.PortRange
	To    netip.AddrPort
}

// maxCarrierPorts bounds carrier_ports. The edge reserves every carrier
// port from the router's own sockets (ip_local_reserved_ports), so a
// range as wide as 1024-65535 leaves the router no port for its own DNS,
// NTP or SSH connections. 32768 ports are already more carriers than the
// edge's flow table holds (65536 flows; a port carries one carrier per
// protocol: 98304 with TCP, UDP and ICMP), and leave the kernel's whole
// default ephemeral range (32768-60999) or the rest free.
const maxCarrierPorts = 32768

// Load reads and validates an edge.yaml.
func Load(path string) (*Settings, error) {
	var c Config
	if err := config.Load(path, &c); err != nil {
		return nil, err
	}
	s, err := c.Validate()
	return s, config.InFile(filepath.Base(path), err)
}

// Validate checks every field and returns the parsed settings; the error
// names the first field that is wrong.
func (c *Config) Validate() (*Settings, error) {
	s := &Settings{Site: c.Site, Relay: c.Relay, TLS: c.TLS, LAN: c.LAN, WAN: c.WAN, PinPath: c.PinPath, User: c.User, MetricsListen: c.MetricsListen}
	if err := metrics.CheckListen("metrics_listen", c.MetricsListen); err != nil {
		return nil, err
	}
	if err := config.CheckUser("user", c.User); err != nil {
		return nil, err
	}
	if err := config.CheckSiteID("site", c.Site); err != nil {
		return nil, err
	}
	if c.Relay == "" {
		return nil, config.Errorf("relay", "missing (host:port of the relay's control endpoint)")
	}
	if err := config.CheckHostPort("relay", c.Relay); err != nil {
		return nil, err
	}
	s.ServerName = c.ServerName
	if s.ServerName == "" {
		s.ServerName, _, _ = net.SplitHostPort(c.Relay)
	}
	if err := c.TLS.Check("tls"); err != nil {
		return nil, err
	}
	if c.LAN == "" {
		return nil, config.Errorf("lan_interface", "missing")
	}
	if c.WAN == "" {
		return nil, config.Errorf("wan_interface", "missing")
	}
	if c.LAN == c.WAN {
		return nil, config.Errorf("wan_interface", "is the same interface as lan_interface (%s)", c.LAN)
	}
	var err error
	s.CarrierPorts = config.PortRange{First: 61000, Last: 64999}
	if c.CarrierPorts != "" {
		if s.CarrierPorts, err = config.ParsePortRange("carrier_ports", c.CarrierPorts); err != nil {
			return nil, err
		}
	}
	if s.CarrierPorts.Len() < 64 {
		return nil, config.Errorf("carrier_ports", "%v holds %d ports; give at least 64", s.CarrierPorts, s.CarrierPorts.Len())
	}
	if s.CarrierPorts.First < config.MinCarrierPort {
		return nil, config.Errorf("carrier_ports", "%v holds system ports (below %d), which the router's own services use and a CGNAT maps only to system ports", s.CarrierPorts, config.MinCarrierPort)
	}
	if s.CarrierPorts.Len() > maxCarrierPorts {
		return nil, config.Errorf("carrier_ports", "%v holds %d ports; give at most %d (the edge reserves them all from the router's own sockets)", s.CarrierPorts, s.CarrierPorts.Len(), maxCarrierPorts)
	}
	if s.Keepalive, err = config.ParseDuration("keepalive", c.Keepalive, 15*time.Second, time.Second); err != nil {
		return nil, err
	}
	if s.Keepalive > 25*time.Second {
		// CGNAT UDP mappings may expire after 30 s; a slower keepalive
		// loses the control channel's mapping on such a NAT.
		return nil, config.Errorf("keepalive", "%v is above 25s, too slow for a CGNAT with a 30 s UDP timeout", s.Keepalive)
	}
	if s.PinPath == "" {
		s.PinPath = "/sys/fs/bpf/unmap/edge-" + c.Site
	}
	if !filepath.IsAbs(s.PinPath) {
		return nil, config.Errorf("pin_path", "%q is not an absolute path (a folder on the bpf filesystem, such as /sys/fs/bpf/unmap/edge-%s)", s.PinPath, c.Site)
	}
	if s.Timers, err = c.Timeouts.Parse("timeouts"); err != nil {
		return nil, err
	}
	if s.Misses, err = c.MissLimit.Parse("miss_limit"); err != nil {
		return nil, err
	}
	if s.Inbound, err = c.InboundLimits.Parse("inbound_limits"); err != nil {
		return nil, err
	}
	if s.Allow, err = c.Inbound.parseAllow(); err != nil {
		return nil, err
	}
	if s.Forwards, err = c.Inbound.parseForwards(); err != nil {
		return nil, err
	}
	if s.PortMap, err = c.PortMapping.parse("port_mapping"); err != nil {
		return nil, err
	}
	return s, nil
}

func (in Inbound) parseAllow() ([]Allow, error) {
	out := make([]Allow, 0, len(in.Allow))
	for i, r := range in.Allow {
		field := fmt.Sprintf("inbound.allow[%d]", i)
		var a Allow
		var err error
		if a.Proto, err = parseProto(field+".proto", r.Proto, true); err != nil {
			return nil, err
		}
		if a.Hosts, err = parseHosts(field+".hosts", r.Hosts); err != nil {
			return nil, err
		}
		a.Ports = config.PortRange{First: 1, Last: 65535}
		if r.Ports != "" {
			if a.Proto != session.TCP && a.Proto != session.UDP {
				return nil, config.Errorf(field+".ports", "ports need proto tcp or udp, not %s", r.Proto)
			}
			if a.Ports, err = config.ParsePortRange(field+".ports", r.Ports); err != nil {
				return nil, err
			}
		}
		out = append(out, a)
	}
	return out, nil
}

func (in Inbound) parseForwards() ([]Forward, error) {
	out := make([]Forward, 0, len(in.Forwards))
	for i, r := range in.Forwards {
		field := fmt.Sprintf("inbound.forwards[%d]", i)
		var f Forward
		var err error
		if f.Proto, err = parseProto(field+".proto", r.Proto, false); err != nil {
			return nil, err
		}
		if f.Ports, err = config.ParsePortRange(field+".port", r.Port); err != nil {
			return nil, err
		}
		if f.To, err = config.ParseAddrPort(field+".to", r.To); err != nil {
			return nil, err
		}
		if !f.To.Addr().Is4() {
			return nil, config.Errorf(field+".to", "%s is not an IPv4 LAN host (forwards serve the site's public IPv4)", r.To)
		}
		if why := config.Unicast(f.To.Addr()); why != "" {
			return nil, config.Errorf(field+".to", "%s is %s, not a LAN host", r.To, why)
		}
		if int(f.To.Port())+f.Ports.Len()-1 > 65535 {
			return nil, config.Errorf(field+".to", "port %d plus the %d ports of the range runs past 65535", f.To.Port(), f.Ports.Len())
		}
		for j, prev := range out[:i] {
			if prev.Proto == f.Proto && prev.Ports.Overlaps(f.Ports) {
				return nil, config.Errorf(field+".port", "%v overlaps inbound.forwards[%d] (%v)", f.Ports, j, prev.Ports)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func parseProto(field, s string, anyOK bool) (session.Proto, error) {
	switch s {
	case "tcp":
		return session.TCP, nil
	case "udp":
		return session.UDP, nil
	case "icmp":
		if anyOK {
			return session.ICMPv6, nil
		}
	case "any":
		if anyOK {
			return 0, nil
		}
	}
	if anyOK {
		return 0, config.Errorf(field, "%q is not tcp, udp, icmp or any", s)
	}
	return 0, config.Errorf(field, "%q is not tcp or udp", s)
}

// parseHosts takes a prefix or a bare address (a /128 or /32).
func parseHosts(field, s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := config.ParseAddr(field, s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return config.ParsePrefix(field, s)
}
