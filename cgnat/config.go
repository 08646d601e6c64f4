package cgnat

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/session/cgnat"
)

// Config is relay.yaml's cgnat section, as written. Its zero value (no
// section) is no CGNAT.
type Config struct {
	Interface string `yaml:"interface"` // the subscribers' interface (relay_sub attaches there)
	Inside    string `yaml:"inside"`    // the subscribers' IPv4 prefix, e.g. 100.64.0.0/16: anything else there is dropped
	Gateway   string `yaml:"gateway"`   // the relay's address towards the subscribers; refusals come from it
	Pool      string `yaml:"pool"`      // public IPv4 addresses: a prefix (198.51.100.128/29) or a range (198.51.100.128-198.51.100.135)
	Ports     string `yaml:"ports"`     // block ports on each pool address; default 32768-65535
	// BlockSize is the ports of a block: 64, 128, 256 or 512 (default).
	BlockSize int `yaml:"block_size"`
	// BlocksPerSubscriber is the blocks a subscriber holds at most at
	// once, 1 to 4 (default 4).
	BlocksPerSubscriber int    `yaml:"blocks_per_subscriber"`
	Filtering           string `yaml:"filtering"`     // endpoint-independent (default), address-dependent, address-and-port-dependent
	Deterministic       bool   `yaml:"deterministic"` // RFC 7422: blocks computed from the subscriber's address, never granted, never logged
	MaxMappings         int    `yaml:"max_mappings"`  // mappings the datapath holds; default 1048576 (46 bytes each)
	Grace               string `yaml:"grace"`         // an empty block stays this long before it goes back, and rests as long; default 2m
	Log                 string `yaml:"log"`           // the block log: a JSON-lines file (an absolute path) or syslog (syslog+udp://HOST:PORT, syslog+tcp://HOST:PORT, syslog+unix:///dev/log); required unless deterministic
	// NAT64 (RFC 6146): IPv6-only subscribers reach IPv4 servers through
	// the same pool. Inside6 is their prefix (/44 to /64, each /64 one
	// subscriber); without it there is no NAT64.
	Inside6 string `yaml:"inside6"`
	// NAT64Prefix is where IPv4 servers are: a /96 (RFC 6052), default
	// the well-known 64:ff9b::/96; a DNS64 resolver must use the same.
	NAT64Prefix string `yaml:"nat64_prefix"`
	// NAT64MTU is the IPv6-only subscribers' link MTU, 1280 to 9000
	// (default 1500): IPv4 that would be larger as IPv6 is answered
	// fragmentation needed (DF) or dropped.
	NAT64MTU int `yaml:"nat64_mtu"`
	// MoreInterfaces are further subscriber interfaces (relay_sub on
	// each too), e.g. a link of IPv6-only subscribers.
	MoreInterfaces []string `yaml:"more_interfaces"`
	Timeouts       struct {
		UDP            string `yaml:"udp"`             // default 2m (RFC 4787 REQ-5: at least 2 minutes)
		TCPEstablished string `yaml:"tcp_established"` // default 2h4m (RFC 5382)
		TCPTransitory  string `yaml:"tcp_transitory"`  // default 4m (RFC 5382)
		ICMP           string `yaml:"icmp"`            // default 60s (RFC 5508)
	} `yaml:"timeouts"`

	// PortMapping is PCP and NAT-PMP for the subscribers (portmap_config.go).
	PortMapping PortMapping `yaml:"port_mapping"`
}

// Timeouts are a mapping's idle times by protocol and TCP state.
type Timeouts struct {
	UDP, TCPEstablished, TCPTransitory, ICMP time.Duration
}

// DefaultTimeouts are the RFCs' (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-2).
var DefaultTimeouts = Timeouts{UDP: 2 * time.Minute, TCPEstablished: 2*time.Hour + 4*time.Minute, TCPTransitory: 4 * time.Minute, ICMP: time.Minute}

// Settings is a validated Config.
type Settings struct {
	Interface      string
	MoreInterfaces []string     // further subscriber interfaces
	Datapath       cgnat.Config // what xdp.Options.CGNAT takes
	Quota          int
	Deterministic  bool
	MaxMappings    uint32
	Grace          time.Duration
	Log            string
	Timeouts       Timeouts
	PortMap        PortMap // PCP and NAT-PMP for the subscribers; off by default
}

// Enabled reports whether the section was there.
func (c *Config) Enabled() bool { return c.Interface != "" || c.Inside != "" || c.Pool != "" }

// The relay's own fields the CGNAT must not overlap: its carrier
// addresses and ports and the sites' public IPv4s (with their field
// names, so an error names both sides).
type Relay struct {
	Interface    string
	Addresses    []netip.Addr
	CarrierPorts config.PortRange
	SiteIPv4     map[string]netip.Addr // field name (sites[i].ipv4) -> address
}

// Parse validates the section (field is its name, "cgnat") against the
// rest of relay.yaml. nil Settings and no error: no section.
func (c *Config) Parse(field string, r Relay) (*Settings, error) {
	if !c.Enabled() {
		return nil, nil
	}
	f := func(name string) string { return field + "." + name }
	s := &Settings{Interface: c.Interface, Deterministic: c.Deterministic, Log: c.Log}
	if c.Interface == "" {
		return nil, config.Errorf(f("interface"), "missing (the subscribers' interface)")
	}
	if c.Interface == r.Interface {
		return nil, config.Errorf(f("interface"), "%s is interface too: the subscribers need an interface of their own", c.Interface)
	}
	d := &s.Datapath
	var err error
	if d.Inside, err = config.ParsePrefix(f("inside"), c.Inside); err != nil {
		return nil, err
	}
	if c.Gateway != "" {
		if d.Gateway, err = config.ParseAddr(f("gateway"), c.Gateway); err != nil {
			return nil, err
		}
		if !d.Inside.Contains(d.Gateway) {
			return nil, config.Errorf(f("gateway"), "%v is not inside %v", d.Gateway, d.Inside)
		}
	}
	if d.PoolFirst, d.PoolAddrs, err = parsePool(f("pool"), c.Pool); err != nil {
		return nil, err
	}
	ports := config.PortRange{First: 32768, Last: 65535}
	if c.Ports != "" {
		if ports, err = config.ParsePortRange(f("ports"), c.Ports); err != nil {
			return nil, err
		}
	}
	if ports.First < config.MinCarrierPort {
		return nil, config.Errorf(f("ports"), "%v holds system ports (below %d)", ports, config.MinCarrierPort)
	}
	size := c.BlockSize
	if size == 0 {
		size = 512
	}
	switch size {
	case 64, 128, 256, 512:
	default:
		return nil, config.Errorf(f("block_size"), "%d: want 64, 128, 256 or 512", size)
	}
	for d.BlockBits = 6; 1<<d.BlockBits < size; d.BlockBits++ {
	}
	d.PortLo = ports.First
	d.Blocks = (int(ports.Last) - int(ports.First) + 1) / size
	if d.Blocks < 1 {
		return nil, config.Errorf(f("ports"), "%v is shorter than one block of %d ports", ports, size)
	}
	s.Quota = c.BlocksPerSubscriber
	if s.Quota == 0 {
		s.Quota = cgnat.SubBlocks
	}
	if s.Quota < 1 || s.Quota > cgnat.SubBlocks {
		return nil, config.Errorf(f("blocks_per_subscriber"), "%d: want 1 to %d", s.Quota, cgnat.SubBlocks)
	}
	if s.Quota > d.NumBlocks() {
		return nil, config.Errorf(f("blocks_per_subscriber"), "%d is more than the pool's %d blocks (%d addresses x %d)", s.Quota, d.NumBlocks(), d.PoolAddrs, d.Blocks)
	}
	switch c.Filtering {
	case "", "endpoint-independent":
		d.Filter = cgnat.EIF
	case "address-dependent":
		d.Filter = cgnat.ADF
	case "address-and-port-dependent":
		d.Filter = cgnat.APDF
	default:
		return nil, config.Errorf(f("filtering"), "%q: want endpoint-independent, address-dependent or address-and-port-dependent", c.Filtering)
	}
	if last := addAddr(d.PoolFirst, d.PoolAddrs-1); d.Inside.Contains(d.PoolFirst) || d.Inside.Contains(last) ||
		inRange(d.Inside.Addr(), d.PoolFirst, last) {
		return nil, config.Errorf(f("pool"), "%v-%v overlaps %s %v: a subscriber's inside address would be a public one", d.PoolFirst, last, f("inside"), d.Inside)
	}
	if err := c.parse64(f, s, r); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, config.Errorf(field, "%v", err)
	}
	if err := s.checkSplit(field, r); err != nil {
		return nil, err
	}
	if s.Deterministic {
		if err := (cgnat.Deterministic{Config: d, Quota: s.Quota}).Validate(); err != nil {
			return nil, config.Errorf(f("deterministic"), "%v", err)
		}
	}
	switch {
	case c.MaxMappings == 0:
		s.MaxMappings = 1 << 20
	case c.MaxMappings < 1024 || c.MaxMappings > 1<<26:
		return nil, config.Errorf(f("max_mappings"), "%d: want 1024 to %d", c.MaxMappings, 1<<26)
	default:
		s.MaxMappings = uint32(c.MaxMappings)
	}
	if s.Grace, err = config.ParseDuration(f("grace"), c.Grace, 2*time.Minute, 0); err != nil {
		return nil, err
	}
	t := &s.Timeouts
	if t.UDP, err = config.ParseDuration(f("timeouts.udp"), c.Timeouts.UDP, DefaultTimeouts.UDP, 2*time.Minute); err != nil {
		return nil, err
	}
	if t.TCPEstablished, err = config.ParseDuration(f("timeouts.tcp_established"), c.Timeouts.TCPEstablished, DefaultTimeouts.TCPEstablished, 2*time.Hour+4*time.Minute); err != nil {
		return nil, err
	}
	if t.TCPTransitory, err = config.ParseDuration(f("timeouts.tcp_transitory"), c.Timeouts.TCPTransitory, DefaultTimeouts.TCPTransitory, 4*time.Minute); err != nil {
		return nil, err
	}
	if t.ICMP, err = config.ParseDuration(f("timeouts.icmp"), c.Timeouts.ICMP, DefaultTimeouts.ICMP, time.Minute); err != nil {
		return nil, err
	}
	for _, v := range []time.Duration{t.UDP, t.TCPEstablished, t.TCPTransitory, t.ICMP} {
		if v > maxTimeout {
			return nil, config.Errorf(f("timeouts"), "%v is past the longest idle time the sweep's epochs can tell (%v)", v, maxTimeout)
		}
	}
	if s.PortMap, err = c.PortMapping.parse(f("port_mapping"), d.Inside); err != nil {
		return nil, err
	}
	if !s.Deterministic && s.Log == "" {
		return nil, config.Errorf(f("log"), "missing: every block grant and release is logged (RFC 6888 REQ-12); deterministic mode needs none")
	}
	switch {
	case IsSyslog(s.Log):
		if _, err := ParseSyslog(s.Log); err != nil {
			return nil, config.Errorf(f("log"), "%v", err)
		}
	case s.Log != "" && !filepath.IsAbs(s.Log):
		return nil, config.Errorf(f("log"), "%q is not an absolute path (or a syslog+udp://, syslog+tcp:// or syslog+unix:// address)", s.Log)
	}
	return s, nil
}

// parse64 reads NAT64's fields, each error naming its field.
func (c *Config) parse64(f func(string) string, s *Settings, r Relay) error {
	for i, name := range c.MoreInterfaces {
		field := fmt.Sprintf("%s[%d]", f("more_interfaces"), i)
		if name == "" || name == c.Interface || slices.Contains(c.MoreInterfaces[:i], name) {
			return config.Errorf(field, "%q: want another interface than cgnat.interface and the ones before", name)
		}
		if name == r.Interface {
			return config.Errorf(field, "%s is interface too: the subscribers need interfaces of their own", name)
		}
	}
	s.MoreInterfaces = c.MoreInterfaces
	d := &s.Datapath
	if c.Inside6 == "" {
		if c.NAT64MTU != 0 {
			return config.Errorf(f("nat64_mtu"), "%d without inside6: NAT64 needs the IPv6-only subscribers' prefix", c.NAT64MTU)
		}
		if c.NAT64Prefix != "" {
			return config.Errorf(f("nat64_prefix"), "%s without inside6: NAT64 needs the IPv6-only subscribers' prefix", c.NAT64Prefix)
		}
		return nil
	}
	var err error
	if d.Inside6, err = config.ParsePrefix(f("inside6"), c.Inside6); err != nil {
		return err
	}
	if b := d.Inside6.Bits(); !d.Inside6.Addr().Is6() || d.Inside6.Addr().Is4In6() || b < cgnat.MinInside6Bits || b > 64 {
		return config.Errorf(f("inside6"), "%v: want an IPv6 prefix of /%d to /64 (each /64 in it is one subscriber)", d.Inside6, cgnat.MinInside6Bits)
	}
	if d.Inside6.Masked() != d.Inside6 {
		return config.Errorf(f("inside6"), "%v has host bits set", d.Inside6)
	}
	if c.Deterministic {
		return config.Errorf(f("deterministic"), "covers IPv4 subscribers only: no NAT64 (inside6 %v) with it", d.Inside6)
	}
	if c.NAT64MTU != 0 && (c.NAT64MTU < 1280 || c.NAT64MTU > 9000) {
		return config.Errorf(f("nat64_mtu"), "%d: want 1280 to 9000 (IPv6's minimum to jumbo)", c.NAT64MTU)
	}
	d.MTU6 = c.NAT64MTU
	if c.NAT64Prefix != "" {
		if d.Prefix64, err = config.ParsePrefix(f("nat64_prefix"), c.NAT64Prefix); err != nil {
			return err
		}
		p := d.Prefix64
		switch {
		case !p.Addr().Is6() || p.Addr().Is4In6():
			return config.Errorf(f("nat64_prefix"), "%v is not an IPv6 prefix", p)
		case p.Bits() != 96:
			return config.Errorf(f("nat64_prefix"), "%v: only /96 is supported (RFC 6052 2.2: the IPv4 address in the last 32 bits; the /32 to /64 forms are not)", p)
		case p.Masked() != p:
			return config.Errorf(f("nat64_prefix"), "%v has host bits set", p)
		case p.Overlaps(d.Inside6):
			return config.Errorf(f("nat64_prefix"), "%v overlaps inside6 %v", p, d.Inside6)
		}
	}
	for i, a := range r.Addresses {
		if d.Inside6.Contains(a) {
			return config.Errorf(f("inside6"), "%v holds addresses[%d] %v: the relay's public address among its subscribers", d.Inside6, i, a)
		}
		if d.Prefix().Contains(a) {
			return config.Errorf(f("nat64_prefix"), "%v holds addresses[%d] %v: the relay's own address would be taken for an IPv4 server", d.Prefix(), i, a)
		}
	}
	return nil
}

// checkSplit refuses a pool that shares an address:port with the
// carriers or a site, naming both fields.
func (s *Settings) checkSplit(field string, r Relay) error {
	d := &s.Datapath
	last := addAddr(d.PoolFirst, d.PoolAddrs-1)
	lo, hi := int(d.PortLo), int(d.PortLo)+d.PerAddr()-1
	for i, a := range r.Addresses {
		if inRange(a, d.PoolFirst, last) && int(r.CarrierPorts.First) <= hi && int(r.CarrierPorts.Last) >= lo {
			return config.Errorf(field+".pool", "%v-%v ports %d-%d overlap carrier_ports %v on addresses[%d] %v", d.PoolFirst, last, lo, hi, r.CarrierPorts, i, a)
		}
	}
	for name, a := range r.SiteIPv4 {
		if inRange(a, d.PoolFirst, last) {
			return config.Errorf(field+".pool", "%v-%v holds %s %v", d.PoolFirst, last, name, a)
		}
		if d.Inside.Contains(a) {
			return config.Errorf(field+".inside", "%v holds %s %v", d.Inside, name, a)
		}
	}
	for i, a := range r.Addresses {
		if d.Inside.Contains(a) {
			return config.Errorf(field+".inside", "%v holds addresses[%d] %v: the relay's public address among its subscribers", d.Inside, i, a)
		}
	}
	return nil
}

// maxTimeout is the longest idle time: half the sweep epoch's 16 bits.
const maxTimeout = EpochLength * (1 << 15)

// parsePool reads "a.b.c.d/n" or "a.b.c.d-e.f.g.h".
func parsePool(field, s string) (netip.Addr, int, error) {
	if s == "" {
		return netip.Addr{}, 0, config.Errorf(field, "missing (the public IPv4 addresses subscribers share)")
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		if !p.Addr().Is4() || p.Bits() < 16 || p.Masked() != p {
			return netip.Addr{}, 0, config.Errorf(field, "%s: want an IPv4 prefix of /16 or longer without host bits", s)
		}
		return p.Addr(), 1 << (32 - p.Bits()), nil
	}
	var a, b netip.Addr
	for i, c := range s {
		if c == '-' {
			var err1, err2 error
			a, err1 = netip.ParseAddr(s[:i])
			b, err2 = netip.ParseAddr(s[i+1:])
			if err1 != nil || err2 != nil {
				break
			}
			if !a.Is4() || !b.Is4() || b.Less(a) {
				return netip.Addr{}, 0, config.Errorf(field, "%s: want IPv4 addresses, the first one first", s)
			}
			n := int(u32(b)-u32(a)) + 1
			if n > 1<<16 {
				return netip.Addr{}, 0, config.Errorf(field, "%s: %d addresses, at most 65536", s, n)
			}
			return a, n, nil
		}
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return a, 1, nil
	}
	return netip.Addr{}, 0, config.Errorf(field, "%q is not an IPv4 prefix, address or range like 198.51.100.128-198.51.100.135", s)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addAddr(a netip.Addr, n int) netip.Addr {
	v := u32(a) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func inRange(a, first, last netip.Addr) bool {
	return a.Is4() && u32(a) >= u32(first) && u32(a) <= u32(last)
}

func (s *Settings) String() string {
	d := &s.Datapath
	return fmt.Sprintf("%v, pool %v+%d, %d blocks of %d ports from %d, quota %d", d.Inside, d.PoolFirst, d.PoolAddrs, d.Blocks, d.BlockSize(), d.PortLo, s.Quota)
}
