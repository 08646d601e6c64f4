// Package upnp is what the UPnP IGD server reads and writes: SSDP
// M-SEARCH requests and their answers (ssdp.go), SOAP actions and their
// responses and faults (soap.go), and the device descriptions of an
// InternetGatewayDevice v1 and v2 (desc.go). Every parser is bounded and
// fuzzed; the server is in package portmap.
package upnp

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// SSDP's group and port.
const (
	SSDPGroup4 = "239.255.255.250"
	SSDPPort   = 1900
	// MaxSearchSize bounds an M-SEARCH: real ones are ~150 bytes.
	MaxSearchSize = 1024
	maxHeaders    = 24
)

// Search is an M-SEARCH's target (ST) and wait (MX).
type Search struct {
	ST string
	MX int
}

// ErrNotSearch is ParseSearch's error for SSDP traffic that is not an
// M-SEARCH (NOTIFYs, answers): ignored, not refused.
var ErrNotSearch = errors.New("ssdp: not an M-SEARCH")

// ParseSearch reads an M-SEARCH request.
func ParseSearch(b []byte) (Search, error) {
	if len(b) > MaxSearchSize {
		return Search{}, errors.New("ssdp: oversize")
	}
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return Search{}, errors.New("ssdp: no request line")
	}
	if !bytes.HasPrefix(line, []byte("M-SEARCH ")) {
		return Search{}, ErrNotSearch
	}
	if string(line) != "M-SEARCH * HTTP/1.1" {
		return Search{}, errors.New("ssdp: bad request line")
	}
	var s Search
	man := false
	for i := 0; ; i++ {
		if i > maxHeaders {
			return Search{}, errors.New("ssdp: too many headers")
		}
		line, rest, ok = bytes.Cut(rest, []byte("\r\n"))
		if !ok || len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return Search{}, errors.New("ssdp: bad header line")
		}
		v := strings.TrimSpace(string(value))
		switch strings.ToUpper(strings.TrimSpace(string(name))) {
		case "ST":
			s.ST = v
		case "MAN":
			man = v == `"ssdp:discover"`
		case "MX":
			fmt.Sscanf(v, "%d", &s.MX)
		}
	}
	if !man || s.ST == "" {
		return Search{}, errors.New("ssdp: no MAN ssdp:discover or no ST")
	}
	return s, nil
}

// Answer is one M-SEARCH answer: the ST it names, the device's USN and
// where its description is.
type Answer struct {
	ST, USN, Location, Server string
	MaxAge                    int
}

// Append writes the answer (an HTTP response over UDP) after b.
func (a Answer) Append(b []byte) []byte {
	return fmt.Appendf(b, "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=%d\r\nEXT:\r\nLOCATION: %s\r\nSERVER: %s\r\nST: %s\r\nUSN: %s\r\n\r\n",
		a.MaxAge, a.Location, a.Server, a.ST, a.USN)
}
