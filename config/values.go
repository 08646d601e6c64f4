package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/unmap-dev/unmap/session/ports"
)

// PortRange is an inclusive range of TCP/UDP ports, written "40000-49999"
// or a single "443": the allocators' own type, so a parsed config needs no
// conversion.
type PortRange = ports.Range

// ParsePortRange parses field's value s; port 0 is never valid.
func ParsePortRange(field, s string) (PortRange, error) {
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	first, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	last, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || first == 0 {
		return PortRange{}, Errorf(field, "%q is not a port range like 40000-49999", s)
	}
	if first > last {
		return PortRange{}, Errorf(field, "%q starts after it ends", s)
	}
	return PortRange{First: uint16(first), Last: uint16(last)}, nil
}

// ParsePrefix parses an IP prefix and insists it is in canonical form
// (no host bits set), since 2001:db8::1/48 is almost always a typo.
func ParsePrefix(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, Errorf(field, "%s is not a prefix", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, Errorf(field, "%s has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// ParseAddr parses an IP address without a zone.
func ParseAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, Errorf(field, "%s is not an IP address", s)
	}
	return a.Unmap(), nil
}

// ParseAddrPort parses "198.51.100.6:443" or "[2001:db8::1]:443".
func ParseAddrPort(field, s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, Errorf(field, "%s is not an address:port", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// ParseDuration parses a Go duration ("30s", "2h4m") that must be at
// least min; an empty string gives def.
func ParseDuration(field, s string, def, min time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, Errorf(field, "%q is not a duration like 30s or 2h4m", s)
	}
	if d < min {
		return 0, Errorf(field, "%v is below the minimum of %v", d, min)
	}
	return d, nil
}
