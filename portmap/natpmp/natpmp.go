// Package natpmp is the wire format of NAT-PMP (RFC 6886), PCP's
// predecessor on the same port (version 0): the external address request
// and the UDP and TCP mapping requests, and their responses. Parse is
// bounded and fuzzed.
package natpmp

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Version is NAT-PMP's version number; PCP is 2.
const Version = 0

// Opcodes of requests; a response's is 128 plus its request's.
const (
	OpExternalAddress uint8 = 0
	OpMapUDP          uint8 = 1
	OpMapTCP          uint8 = 2
	opResponse        uint8 = 128
)

// Result codes (§3.5).
const (
	Success            uint16 = 0
	UnsupportedVersion uint16 = 1
	NotAuthorized      uint16 = 2
	NetworkFailure     uint16 = 3
	OutOfResources     uint16 = 4
	UnsupportedOpcode  uint16 = 5
)

// Request sizes; anything longer is still read (§3.2 lets a server
// ignore trailing bytes) up to MaxSize.
const (
	addressRequestLen = 2
	mapRequestLen     = 12
	// MaxSize bounds what a server reads of one request: PCP's bound,
	// as both share the port.
	MaxSize = 1100
)

// Request is a parsed request.
type Request struct {
	Opcode       uint8
	InternalPort uint16
	ExternalPort uint16 // suggested
	Lifetime     uint32 // seconds; 0 deletes
}

// ErrDrop is what a server ignores: too short, or a response.
var ErrDrop = errors.New("natpmp: not a request to answer")

// Error is a request refused with a result code.
type Error struct{ Result uint16 }

func (e *Error) Error() string { return "natpmp: request refused" }

// ParseRequest reads a request. The error is ErrDrop or an *Error.
func ParseRequest(b []byte) (*Request, error) {
	if len(b) < 2 || len(b) > MaxSize || b[1]&opResponse != 0 {
		return nil, ErrDrop
	}
	if b[0] != Version {
		return nil, &Error{UnsupportedVersion}
	}
	r := &Request{Opcode: b[1]}
	switch r.Opcode {
	case OpExternalAddress:
		return r, nil
	case OpMapUDP, OpMapTCP:
	default:
		return nil, &Error{UnsupportedOpcode}
	}
	if len(b) < mapRequestLen {
		return nil, ErrDrop
	}
	r.InternalPort = binary.BigEndian.Uint16(b[4:])
	r.ExternalPort = binary.BigEndian.Uint16(b[6:])
	r.Lifetime = binary.BigEndian.Uint32(b[8:])
	return r, nil
}

// Append writes the request after b (a client's side).
func (r *Request) Append(b []byte) []byte {
	if r.Opcode == OpExternalAddress {
		return append(b, Version, OpExternalAddress)
	}
	b = append(b, Version, r.Opcode, 0, 0)
	b = binary.BigEndian.AppendUint16(b, r.InternalPort)
	b = binary.BigEndian.AppendUint16(b, r.ExternalPort)
	return binary.BigEndian.AppendUint32(b, r.Lifetime)
}

// Response is an answer: External for the address request, the ports
// and lifetime for a mapping request.
type Response struct {
	Opcode       uint8 // the request's
	Result       uint16
	Epoch        uint32
	External     netip.Addr
	InternalPort uint16
	ExternalPort uint16
	Lifetime     uint32
}

// Append writes the response after b.
func (r *Response) Append(b []byte) []byte {
	b = append(b, Version, r.Opcode|opResponse)
	b = binary.BigEndian.AppendUint16(b, r.Result)
	b = binary.BigEndian.AppendUint32(b, r.Epoch)
	if r.Opcode == OpExternalAddress {
		a := [4]byte{}
		if r.External.Is4() {
			a = r.External.As4()
		}
		return append(b, a[:]...)
	}
	if r.Opcode != OpMapUDP && r.Opcode != OpMapTCP {
		return b // an unsupported opcode's answer is the header alone
	}
	b = binary.BigEndian.AppendUint16(b, r.InternalPort)
	b = binary.BigEndian.AppendUint16(b, r.ExternalPort)
	return binary.BigEndian.AppendUint32(b, r.Lifetime)
}

// ParseResponse reads a response (a client's side).
func ParseResponse(b []byte) (*Response, error) {
	if len(b) < 8 || b[0] != Version || b[1]&opResponse == 0 {
		return nil, errors.New("natpmp: not a response")
	}
	r := &Response{Opcode: b[1] &^ opResponse, Result: binary.BigEndian.Uint16(b[2:]), Epoch: binary.BigEndian.Uint32(b[4:])}
	if r.Result != Success && len(b) == 8 {
		return r, nil // an error may be the header alone
	}
	switch r.Opcode {
	case OpExternalAddress:
		if len(b) < 12 {
			return nil, errors.New("natpmp: short response")
		}
		r.External = netip.AddrFrom4([4]byte(b[8:12]))
	case OpMapUDP, OpMapTCP:
		if len(b) < 16 {
			return nil, errors.New("natpmp: short response")
		}
		r.InternalPort = binary.BigEndian.Uint16(b[8:])
		r.ExternalPort = binary.BigEndian.Uint16(b[10:])
		r.Lifetime = binary.BigEndian.Uint32(b[12:])
	}
	return r, nil
}
