package ports

import (
	"net"
	"os"
)

func writeReserved(s string) error { return os.WriteFile(reservedPortsFile, []byte(s), 0o644) }

// bindAny binds a UDP socket to port 0 on loopback in the current
// namespace (the thread's) and returns the port the kernel chose.
func bindAny() (uint16, func(), error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, nil, err
	}
	return uint16(c.LocalAddr().(*net.UDPAddr).Port), func() { c.Close() }, nil
}
