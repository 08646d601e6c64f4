package ports

import (
	"fmt"
	"os"
	"strings"
)

// Sysctl files of the current network namespace.
const (
	reservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"
	portRangeFile     = "/proc/sys/net/ipv4/ip_local_port_range"
)

// Reserve adds r to net.ipv4.ip_local_reserved_ports of the calling
// thread's network namespace (the edge agent's), keeping what is there,
// so the kernel never auto-binds a local socket to a carrier port. It
// needs CAP_NET_ADMIN. The setting also covers IPv6 sockets.
func Reserve(r Range) error {
	if err := r.Check(); err != nil {
		return err
	}
	cur, err := os.ReadFile(reservedPortsFile)
	if err != nil {
		return err
	}
	rs, err := ParseReserved(string(cur))
	if err != nil {
		return fmt.Errorf("%s: %w", reservedPortsFile, err)
	}
	if Covered(rs, r) {
		return nil
	}
	if err := os.WriteFile(reservedPortsFile, []byte(FormatReserved(append(rs, r))+"\n"), 0o644); err != nil {
		return fmt.Errorf("reserving carrier ports %v: %w", r, err)
	}
	return nil
}

// Reserved reads net.ipv4.ip_local_reserved_ports.
func Reserved() ([]Range, error) {
	cur, err := os.ReadFile(reservedPortsFile)
	if err != nil {
		return nil, err
	}
	return ParseReserved(string(cur))
}

// Ephemeral reads net.ipv4.ip_local_port_range, the ports the kernel
// picks from for automatic binds.
func Ephemeral() (Range, error) {
	b, err := os.ReadFile(portRangeFile)
	if err != nil {
		return Range{}, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return Range{}, fmt.Errorf("%s: %q is not two ports", portRangeFile, clip(string(b)))
	}
	rs, err := ParseReserved(f[0] + "-" + f[1])
	if err != nil || len(rs) != 1 {
		return Range{}, fmt.Errorf("%s: %q is not a port range", portRangeFile, clip(string(b)))
	}
	return rs[0], nil
}

// CheckReserved says whether the kernel may hand a carrier port of r to
// a local socket: nil when r lies outside the ephemeral range or is
// reserved; an error naming the overlap otherwise. The edge agent calls
// it after Reserve, or instead of it when it may not write sysctls.
func CheckReserved(r Range) error {
	eph, err := Ephemeral()
	if err != nil {
		return err
	}
	lo, hi := max(r.First, eph.First), min(r.Last, eph.Last)
	if lo > hi {
		return nil
	}
	rs, err := Reserved()
	if err != nil {
		return err
	}
	if Covered(rs, Range{lo, hi}) {
		return nil
	}
	return fmt.Errorf("carrier ports %v overlap the ephemeral range %v (net.ipv4.ip_local_port_range) without being in net.ipv4.ip_local_reserved_ports: local sockets may take them", Range{lo, hi}, eph)
}
