package relay

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/unmap-dev/unmap/cgnat"
	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/metrics"
)

// Config is relay.yaml. Fields are the file's text; Validate parses them
// into Settings. A zero value of an optional field means its default.
type Config struct {
	Listen        string           `yaml:"listen"`        // QUIC control endpoint; default [::]:443
	TLS           config.TLSFiles  `yaml:"tls"`           // relay certificate, key, and the CA of the edges
	Interface     string           `yaml:"interface"`     // external interface (carriers and sites' traffic)
	Addresses     []string         `yaml:"addresses"`     // relay IPv4 addresses that carriers use
	CarrierPorts  string           `yaml:"carrier_ports"` // relay ports R for carriers; default 20000-59999
	PinPath       string           `yaml:"pin_path"`      // bpffs folder where the XDP maps and link are pinned, so flows outlive the agent; default /sys/fs/bpf/unmap-relay
	Timeouts      config.Timeouts  `yaml:"timeouts"`
	MissLimit     config.MissLimit `yaml:"miss_limit"` // slow-path packets per source: IPv4 address or IPv6 /64 (carriers from the edges' CGNAT addresses: not bound)
	Sites         []SiteConfig     `yaml:"sites"`
	MetricsListen string           `yaml:"metrics_listen"` // host:port of the Prometheus /metrics server; default: none. Unauthenticated: bind it to localhost or a management network
	User          string           `yaml:"user"`           // become this user (name or uid) once set up; default: stay root, with only the capabilities still needed

	// Bounds on inbound flows (what an Internet host can make the agent
	// hold for a site): config.InboundLimits.
	InboundLimits config.InboundLimits `yaml:"inbound_limits"`

	// The relay's carrier-grade NAT for subscribers of its own (package
	// cgnat); none without the section.
	CGNAT cgnat.Config `yaml:"cgnat"`
}

// SiteConfig is what the relay grants one site.
type SiteConfig struct {
	ID        string `yaml:"id"`         // site id, as in the edge's certificate
	Prefix    string `yaml:"prefix"`     // delegated IPv6 prefix, /64 or shorter
	IPv4      string `yaml:"ipv4"`       // optional public IPv4 of the site
	IPv4Ports string `yaml:"ipv4_ports"` // A+P port set of IPv4 (RFC 6346); default all ports
	MaxFlows  int    `yaml:"max_flows"`  // quota of concurrent flows; default 65536
}

// Settings is a validated Config.
type Settings struct {
	Listen        netip.AddrPort
	TLS           config.TLSFiles
	Interface     string
	Addresses     []netip.Addr
	CarrierPorts  config.PortRange
	PinPath       string
	Timers        config.Timers
	Misses        config.MissBound
	Sites         []Site
	User          string // empty: stay root
	MetricsListen string // empty: no /metrics

	// Inbound flow bounds, defaults filled in.
	Inbound config.InboundBounds

	CGNAT *cgnat.Settings // nil: no CGNAT
}

// Site is a parsed SiteConfig; IPv4 is invalid when the site has none.
type Site struct {
	ID        string
	Prefix    netip.Prefix
	IPv4      netip.Addr
	IPv4Ports config.PortRange
	MaxFlows  int
}

// Load reads and validates a relay.yaml.
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
	s := &Settings{TLS: c.TLS, Interface: c.Interface, PinPath: c.PinPath, User: c.User, MetricsListen: c.MetricsListen}
	var err error
	listen := c.Listen
	if listen == "" {
		listen = "[::]:443"
	}
	if s.Listen, err = config.ParseAddrPort("listen", listen); err != nil {
		return nil, err
	}
	if err := c.TLS.Check("tls"); err != nil {
		return nil, err
	}
	if c.Interface == "" {
		return nil, config.Errorf("interface", "missing")
	}
	if len(c.Addresses) == 0 {
		return nil, config.Errorf("addresses", "missing (the relay's IPv4 addresses for carriers)")
	}
	for i, a := range c.Addresses {
		field := fmt.Sprintf("addresses[%d]", i)
		addr, err := config.ParseAddr(field, a)
		if err != nil {
			return nil, err
		}
		if !addr.Is4() {
			return nil, config.Errorf(field, "%s is not IPv4 (carriers cross an IPv4 CGNAT)", a)
		}
		if why := config.Unicast(addr); why != "" {
			return nil, config.Errorf(field, "%s is %s, not an address edges can send carriers to", a, why)
		}
		for j, prev := range s.Addresses {
			if prev == addr {
				return nil, config.Errorf(field, "%s is already addresses[%d]", a, j)
			}
		}
		s.Addresses = append(s.Addresses, addr)
	}
	s.CarrierPorts = config.PortRange{First: 20000, Last: 59999}
	if c.CarrierPorts != "" {
		if s.CarrierPorts, err = config.ParsePortRange("carrier_ports", c.CarrierPorts); err != nil {
			return nil, err
		}
	}
	if s.CarrierPorts.First < config.MinCarrierPort {
		return nil, config.Errorf("carrier_ports", "%v holds system ports (below %d): the datapath would take the relay's own services' packets for carriers'", s.CarrierPorts, config.MinCarrierPort)
	}
	if s.CarrierPorts.Contains(s.Listen.Port()) {
		return nil, config.Errorf("carrier_ports", "%v contains the control port %d of listen", s.CarrierPorts, s.Listen.Port())
	}
	if s.PinPath == "" {
		s.PinPath = "/sys/fs/bpf/unmap-relay"
	}
	if !filepath.IsAbs(s.PinPath) {
		return nil, config.Errorf("pin_path", "%q is not an absolute path (a folder on the bpf filesystem, such as /sys/fs/bpf/unmap-relay)", s.PinPath)
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
	if err := metrics.CheckListen("metrics_listen", c.MetricsListen); err != nil {
		return nil, err
	}
	if err := config.CheckUser("user", c.User); err != nil {
		return nil, err
	}
	if len(c.Sites) == 0 {
		return nil, config.Errorf("sites", "missing (a relay with no site serves nobody)")
	}
	for i, sc := range c.Sites {
		site, err := sc.parse(fmt.Sprintf("sites[%d]", i))
		if err != nil {
			return nil, err
		}
		if err := clash(s.Sites, site, i); err != nil {
			return nil, err
		}
		if err := site.checkIPv4(fmt.Sprintf("sites[%d].ipv4", i), s.Addresses); err != nil {
			return nil, err
		}
		s.Sites = append(s.Sites, site)
	}
	r := cgnat.Relay{Interface: s.Interface, Addresses: s.Addresses, CarrierPorts: s.CarrierPorts, SiteIPv4: map[string]netip.Addr{}}
	for i, site := range s.Sites {
		if site.IPv4.IsValid() {
			r.SiteIPv4[fmt.Sprintf("sites[%d].ipv4", i)] = site.IPv4
		}
	}
	if s.CGNAT, err = c.CGNAT.Parse("cgnat", r); err != nil {
		return nil, err
	}
	return s, nil
}

func (sc SiteConfig) parse(field string) (Site, error) {
	site := Site{ID: sc.ID, MaxFlows: sc.MaxFlows}
	if err := config.CheckSiteID(field+".id", sc.ID); err != nil {
		return site, err
	}
	var err error
	if site.Prefix, err = config.ParsePrefix(field+".prefix", sc.Prefix); err != nil {
		return site, err
	}
	if !site.Prefix.Addr().Is6() || site.Prefix.Bits() > 64 {
		// SLAAC on the site's LAN needs a /64.
		return site, config.Errorf(field+".prefix", "%s is not an IPv6 prefix of /64 or shorter", sc.Prefix)
	}
	site.IPv4Ports = config.PortRange{First: 1, Last: 65535}
	if sc.IPv4 != "" {
		if site.IPv4, err = config.ParseAddr(field+".ipv4", sc.IPv4); err != nil {
			return site, err
		}
		if !site.IPv4.Is4() {
			return site, config.Errorf(field+".ipv4", "%s is not IPv4", sc.IPv4)
		}
	}
	if sc.IPv4Ports != "" {
		if sc.IPv4 == "" {
			return site, config.Errorf(field+".ipv4_ports", "needs ipv4")
		}
		if site.IPv4Ports, err = config.ParsePortRange(field+".ipv4_ports", sc.IPv4Ports); err != nil {
			return site, err
		}
	}
	switch {
	case sc.MaxFlows == 0:
		site.MaxFlows = 65536
	case sc.MaxFlows < 0:
		return site, config.Errorf(field+".max_flows", "%d is negative", sc.MaxFlows)
	case sc.MaxFlows > maxSiteFlows:
		return site, config.Errorf(field+".max_flows", "%d is more than the relay's flow table can ever hold (%d)", sc.MaxFlows, maxSiteFlows)
	}
	return site, nil
}

// maxSiteFlows bounds a site's max_flows: the flows the relay's largest
// table holds (maxTableBuckets buckets of four keys, two keys a flow).
// A quota above it could never be met, and the sum of quotas sizes the
// table (tableBuckets): bounded quotas keep that sum from overflowing.
const maxSiteFlows = maxTableBuckets * 4 / 2

// checkIPv4 refuses a site's public IPv4 that no Internet host can
// reach the site at, or that is one of the relay's carrier addresses
// (whose packets are carriers, not the site's).
func (s Site) checkIPv4(field string, relay []netip.Addr) error {
	if !s.IPv4.IsValid() {
		return nil
	}
	if why := config.Unicast(s.IPv4); why != "" {
		return config.Errorf(field, "%v is %s, not a public address for a site", s.IPv4, why)
	}
	for j, a := range relay {
		if a == s.IPv4 {
			return config.Errorf(field, "%v is addresses[%d], a carrier address of the relay", s.IPv4, j)
		}
	}
	return nil
}

// clash reports a site that repeats an id, overlaps a prefix, or shares
// public IPv4 ports with a site before it.
func clash(prev []Site, s Site, i int) error {
	field := fmt.Sprintf("sites[%d]", i)
	for j, p := range prev {
		switch {
		case p.ID == s.ID:
			return config.Errorf(field+".id", "%q is already sites[%d]", s.ID, j)
		case p.Prefix.Overlaps(s.Prefix):
			return config.Errorf(field+".prefix", "%v overlaps sites[%d] (%v)", s.Prefix, j, p.Prefix)
		case s.IPv4.IsValid() && p.IPv4 == s.IPv4 && p.IPv4Ports.Overlaps(s.IPv4Ports):
			return config.Errorf(field+".ipv4_ports", "%v of %v overlaps sites[%d] (%v)", s.IPv4Ports, s.IPv4, j, p.IPv4Ports)
		}
	}
	return nil
}
