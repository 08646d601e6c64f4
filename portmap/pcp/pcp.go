// Package pcp is the wire format of the Port Control Protocol (RFC 6887):
// requests and responses of the ANNOUNCE, MAP and PEER opcodes and their
// THIRD_PARTY, PREFER_FAILURE and FILTER options. Parse is bounded (a
// message is at most 1100 bytes) and fuzzed; Append writes what Parse
// reads. The server is in package portmap, a client in client.go.
package pcp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// Version is the PCP version this package speaks. NAT-PMP is version 0
// on the same port.
const Version = 2

// Ports: servers listen on ServerPort; unsolicited ANNOUNCEs go to
// ClientPort of the all-hosts groups (§14.1.1).
const (
	ServerPort = 5351
	ClientPort = 5350
)

// MaxSize is the largest PCP message (§7).
const MaxSize = 1100

// Opcodes.
const (
	OpAnnounce uint8 = 0
	OpMap      uint8 = 1
	OpPeer     uint8 = 2
)

// Option codes (§7.3; codes below 128 must be understood).
const (
	OptThirdParty    uint8 = 1
	OptPreferFailure uint8 = 2
	OptFilter        uint8 = 3
)

// Result is a response's result code (§7.4).
type Result uint8

// Result codes.
const (
	Success               Result = 0
	UnsuppVersion         Result = 1
	NotAuthorized         Result = 2
	MalformedRequest      Result = 3
	UnsuppOpcode          Result = 4
	UnsuppOption          Result = 5
	MalformedOption       Result = 6
	NetworkFailure        Result = 7
	NoResources           Result = 8
	UnsuppProtocol        Result = 9
	UserExQuota           Result = 10
	CannotProvideExternal Result = 11
	AddressMismatch       Result = 12
	ExcessiveRemotePeers  Result = 13
)

// Sizes of the parts of a message.
const (
	headerLen = 24
	mapLen    = 36
	peerLen   = 56
	filterLen = 20
)

// Map is the MAP opcode's payload; PEER's starts with the same fields.
type Map struct {
	Nonce        [12]byte
	Protocol     uint8
	InternalPort uint16
	ExternalPort uint16     // suggested (request) or assigned (response)
	ExternalAddr netip.Addr // IPv4 as such (IPv4-mapped on the wire)
}

// Peer is PEER's remote peer, after the Map fields.
type Peer struct {
	RemotePort uint16
	RemoteAddr netip.Addr
}

// Filter is a FILTER option's remote peer prefix and port (0: any).
type Filter struct {
	Prefix netip.Prefix
	Port   uint16
}

// Message is a request or a response: the header fields of both (a
// request's Result and Epoch are zero; a response's Client is invalid)
// and the opcode's payload and options.
type Message struct {
	Response bool
	Opcode   uint8
	Result   Result
	Lifetime uint32
	Epoch    uint32
	Client   netip.Addr // request: the client's address
	Map      Map        // MAP and PEER
	Peer     Peer       // PEER
	// Options. A request has each at most once but FILTER.
	ThirdParty    netip.Addr // invalid: none
	PreferFailure bool
	Filters       []Filter
}

// ErrDrop is Parse's error for what a server drops without an answer: a
// message too short to answer, or a response.
var ErrDrop = errors.New("pcp: not a request to answer")

// Error is a request Parse refuses, with the result code its answer
// carries.
type Error struct{ Result Result }

func (e *Error) Error() string { return "pcp: request refused with result " + e.Result.String() }

func (r Result) String() string {
	names := [...]string{"SUCCESS", "UNSUPP_VERSION", "NOT_AUTHORIZED", "MALFORMED_REQUEST",
		"UNSUPP_OPCODE", "UNSUPP_OPTION", "MALFORMED_OPTION", "NETWORK_FAILURE", "NO_RESOURCES",
		"UNSUPP_PROTOCOL", "USER_EX_QUOTA", "CANNOT_PROVIDE_EXTERNAL", "ADDRESS_MISMATCH",
		"EXCESSIVE_REMOTE_PEERS"}
	if int(r) < len(names) {
		return names[r]
	}
	return "RESULT_" + strconv.Itoa(int(r))
}

func refuse(r Result) error { return &Error{Result: r} }

// ParseRequest reads a request as a server must (§8.3): an error is
// ErrDrop or an *Error whose result the answer carries.
func ParseRequest(b []byte) (*Message, error) {
	if len(b) < 2 || b[1]&0x80 != 0 {
		return nil, ErrDrop
	}
	if b[0] != Version {
		return nil, refuse(UnsuppVersion)
	}
	if len(b) < headerLen || len(b) > MaxSize || len(b)%4 != 0 {
		return nil, refuse(MalformedRequest)
	}
	m := &Message{Opcode: b[1], Lifetime: binary.BigEndian.Uint32(b[4:]), Client: addr16(b[8:24])}
	rest, err := m.parseBody(b[headerLen:], true)
	if err != nil {
		return nil, err
	}
	return m, parseOptions(m, rest, true)
}

// ParseResponse reads a response, as a client does.
func ParseResponse(b []byte) (*Message, error) {
	if len(b) < headerLen || len(b) > MaxSize || len(b)%4 != 0 || b[0] != Version || b[1]&0x80 == 0 {
		return nil, errors.New("pcp: not a response")
	}
	m := &Message{Response: true, Opcode: b[1] & 0x7f, Result: Result(b[3]),
		Lifetime: binary.BigEndian.Uint32(b[4:]), Epoch: binary.BigEndian.Uint32(b[8:])}
	rest, err := m.parseBody(b[headerLen:], false)
	if err != nil {
		if m.Result != Success {
			return m, nil // an error may carry less
		}
		return nil, err
	}
	if err := parseOptions(m, rest, false); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Message) parseBody(b []byte, request bool) ([]byte, error) {
	switch m.Opcode {
	case OpAnnounce:
		return b, nil
	case OpMap, OpPeer:
	default:
		if request {
			return nil, refuse(UnsuppOpcode)
		}
		return nil, errors.New("pcp: unknown opcode")
	}
	need := mapLen
	if m.Opcode == OpPeer {
		need = peerLen
	}
	if len(b) < need {
		return nil, refuse(MalformedRequest)
	}
	copy(m.Map.Nonce[:], b[:12])
	m.Map.Protocol = b[12]
	m.Map.InternalPort = binary.BigEndian.Uint16(b[16:])
	m.Map.ExternalPort = binary.BigEndian.Uint16(b[18:])
	m.Map.ExternalAddr = addr16(b[20:36])
	if m.Opcode == OpPeer {
		m.Peer.RemotePort = binary.BigEndian.Uint16(b[36:])
		m.Peer.RemoteAddr = addr16(b[40:56])
	}
	return b[need:], nil
}

func parseOptions(m *Message, b []byte, request bool) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return refuse(MalformedOption)
		}
		code, n := b[0], int(binary.BigEndian.Uint16(b[2:]))
		padded := (n + 3) &^ 3
		if 4+padded > len(b) {
			return refuse(MalformedOption)
		}
		data := b[4 : 4+n]
		b = b[4+padded:]
		switch {
		case code == OptThirdParty && m.Opcode != OpAnnounce:
			if n != 16 || m.ThirdParty.IsValid() {
				return refuse(MalformedOption)
			}
			m.ThirdParty = addr16(data)
		case code == OptPreferFailure && m.Opcode == OpMap:
			if n != 0 || m.PreferFailure {
				return refuse(MalformedOption)
			}
			m.PreferFailure = true
		case code == OptFilter && m.Opcode == OpMap:
			if n != filterLen {
				return refuse(MalformedOption)
			}
			a := addr16(data[4:20])
			bits := int(data[1])
			if a.Is4() {
				bits -= 96 // the prefix length counts the IPv4-mapped form's bits
			}
			p, err := a.Prefix(bits)
			if err != nil || bits < 0 {
				return refuse(MalformedOption)
			}
			m.Filters = append(m.Filters, Filter{Prefix: p, Port: binary.BigEndian.Uint16(data[2:])})
		case code < 128 && request:
			return refuse(UnsuppOption)
		}
		// Optional options (128 and above) are ignored (§7.3).
	}
	return nil
}

// addr16 reads a 16-byte address field: IPv4 when IPv4-mapped.
func addr16(b []byte) netip.Addr {
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

// put16 writes an address field, IPv4 IPv4-mapped; invalid is all zeros
// (IPv4's unspecified address is ::ffff:0.0.0.0).
func put16(b []byte, a netip.Addr) {
	if a.IsValid() {
		x := a.As16()
		copy(b, x[:])
	}
}

// Append writes m after b.
func (m *Message) Append(b []byte) []byte {
	h := make([]byte, headerLen)
	h[0] = Version
	h[1] = m.Opcode
	if m.Response {
		h[1] |= 0x80
		h[3] = byte(m.Result)
		binary.BigEndian.PutUint32(h[4:], m.Lifetime)
		binary.BigEndian.PutUint32(h[8:], m.Epoch)
	} else {
		binary.BigEndian.PutUint32(h[4:], m.Lifetime)
		put16(h[8:], m.Client)
	}
	b = append(b, h...)
	if m.Opcode == OpMap || m.Opcode == OpPeer {
		p := make([]byte, mapLen, peerLen)
		copy(p, m.Map.Nonce[:])
		p[12] = m.Map.Protocol
		binary.BigEndian.PutUint16(p[16:], m.Map.InternalPort)
		binary.BigEndian.PutUint16(p[18:], m.Map.ExternalPort)
		put16(p[20:], m.Map.ExternalAddr)
		if m.Opcode == OpPeer {
			p = p[:peerLen]
			binary.BigEndian.PutUint16(p[36:], m.Peer.RemotePort)
			put16(p[40:], m.Peer.RemoteAddr)
		}
		b = append(b, p...)
	}
	if m.ThirdParty.IsValid() {
		o := make([]byte, 4+16)
		o[0], o[3] = OptThirdParty, 16
		put16(o[4:], m.ThirdParty)
		b = append(b, o...)
	}
	if m.PreferFailure {
		b = append(b, OptPreferFailure, 0, 0, 0)
	}
	for _, f := range m.Filters {
		o := make([]byte, 4+filterLen)
		o[0], o[3] = OptFilter, filterLen
		bits := f.Prefix.Bits()
		if f.Prefix.Addr().Is4() {
			bits += 96
		}
		o[5] = byte(bits)
		binary.BigEndian.PutUint16(o[6:], f.Port)
		put16(o[8:], f.Prefix.Addr())
		b = append(b, o...)
	}
	return b
}

// ErrorResponse is the answer to a request refused with r (§7.2): the
// request copied (up to MaxSize, whole 4-byte words, at least a header)
// with the response bit, the result, the lifetime for which the error
// holds and the server's epoch.
func ErrorResponse(req []byte, r Result, lifetime, epoch uint32) []byte {
	n := min(len(req), MaxSize) &^ 3
	out := make([]byte, max(n, headerLen))
	copy(out, req[:n])
	out[0] = Version
	out[1] |= 0x80
	out[2] = 0
	out[3] = byte(r)
	binary.BigEndian.PutUint32(out[4:], lifetime)
	binary.BigEndian.PutUint32(out[8:], epoch)
	clear(out[12:24])
	return out
}
