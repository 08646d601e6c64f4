// Package natbehave tells a NAT's mapping and filtering behaviour (RFC
// 4787) the way RFC 5780 does, with a small protocol of our own instead of
// STUN: a server with two addresses and two ports (Server) answers a
// client's binding requests with the address:port it saw them from, from
// the socket the request asked for; the client (Prober) reads from those
// answers and from which of them get through how the NAT between maps and
// filters. The lab's end-to-end tests (test/e2e/cgnat) run it across the
// relay's CGNAT and the lab's nftables CGN.
package natbehave

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The wire format, all in network order:
//
//	header (20 bytes): magic "unb1", type (1 request, 2 response),
//	flags (FlagChangeAddr, FlagChangePort), 2 bytes zero, 12-byte
//	transaction id
//	request: the header alone
//	response: the header (the request's flags and id), then mapped and
//	other, each a 16-byte address (IPv4 mapped into IPv6) and a port
//
// Every message has one fixed length, so a parser has nothing to trust.
const (
	headerLen   = 20
	RequestLen  = headerLen
	ResponseLen = headerLen + 2*18
)

var magic = [4]byte{'u', 'n', 'b', '1'}

// Type is a message's kind.
type Type uint8

const (
	Request  Type = 1
	Response Type = 2
)

// Flags ask the server to answer from another socket than the one the
// request reached.
type Flags uint8

const (
	FlagChangeAddr Flags = 1 << iota // answer from the other address
	FlagChangePort                   // answer from the other port
	flagsKnown     = FlagChangeAddr | FlagChangePort
)

// TxID identifies one request and its response.
type TxID [12]byte

// Message is a request or a response.
type Message struct {
	Type  Type
	Flags Flags
	ID    TxID
	// Mapped is the request's source as the server saw it (responses).
	Mapped netip.AddrPort
	// Other is the server's other address and other port, relative to
	// the socket the request reached (responses): RFC 5780's
	// OTHER-ADDRESS, so a client needs only the server's first socket.
	Other netip.AddrPort
}

// Errors of Parse; each names the reason a server counts a drop under.
var (
	ErrShort  = errors.New("natbehave: short message")
	ErrMagic  = errors.New("natbehave: not a natbehave message")
	ErrType   = errors.New("natbehave: unknown message type")
	ErrFlags  = errors.New("natbehave: unknown flags or reserved bits set")
	ErrLength = errors.New("natbehave: wrong length for the type")
)

// Len is the encoded length of m.
func (m Message) Len() int {
	if m.Type == Response {
		return ResponseLen
	}
	return RequestLen
}

// Append appends m's encoding to b.
func (m Message) Append(b []byte) []byte {
	b = append(b, magic[:]...)
	b = append(b, byte(m.Type), byte(m.Flags), 0, 0)
	b = append(b, m.ID[:]...)
	if m.Type != Response {
		return b
	}
	for _, a := range []netip.AddrPort{m.Mapped, m.Other} {
		ip := a.Addr().As16() // the zero Addr encodes as ::
		b = append(b, ip[:]...)
		b = binary.BigEndian.AppendUint16(b, a.Port())
	}
	return b
}

// Parse decodes one message, which must fill b exactly.
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) < headerLen {
		return m, ErrShort
	}
	if [4]byte(b[:4]) != magic {
		return m, ErrMagic
	}
	m.Type, m.Flags = Type(b[4]), Flags(b[5])
	if m.Type != Request && m.Type != Response {
		return m, fmt.Errorf("%w %d", ErrType, b[4])
	}
	if m.Flags&^flagsKnown != 0 || b[6] != 0 || b[7] != 0 {
		return m, ErrFlags
	}
	if len(b) != m.Len() {
		return m, fmt.Errorf("%w: %d bytes, want %d", ErrLength, len(b), m.Len())
	}
	m.ID = TxID(b[8:headerLen])
	if m.Type == Response {
		m.Mapped = addrPort(b[headerLen:])
		m.Other = addrPort(b[headerLen+18:])
	}
	return m, nil
}

func addrPort(b []byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])).Unmap(), binary.BigEndian.Uint16(b[16:18]))
}

// reason names a Parse error for a drop counter.
func reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{{ErrShort, "short"}, {ErrMagic, "magic"}, {ErrType, "type"}, {ErrFlags, "flags"}, {ErrLength, "length"}} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}
