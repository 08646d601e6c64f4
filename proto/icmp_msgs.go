package proto

import "encoding/binary"

// ICMPError body: length(2) packet(length). A later minor version may
// append fields after the packet.

// MinICMPErrorLen is an IPv6 header and an ICMPv6 header; MaxICMPErrorLen
// the IPv6 minimum MTU, which no ICMPv6 error exceeds (RFC 4443 2.4 c).
const (
	MinICMPErrorLen = 40 + 8
	MaxICMPErrorLen = 1280
)

func (m *ICMPError) Length() int { return 2 + len(m.Packet) }

func (m *ICMPError) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Packet)))
	return append(b, m.Packet...)
}

// parseICMPError checks the packet's shape only: an IPv6 packet whose
// length field says its length, carrying an ICMPv6 error (type < 128).
// Whether it is about one of the edge's flows is the edge's to check.
func parseICMPError(r *reader) (*ICMPError, error) {
	n := int(r.u16("packet"))
	if r.err == nil && (n < MinICMPErrorLen || n > MaxICMPErrorLen) {
		r.fail("packet", ErrInvalid)
	}
	p := r.take("packet", n)
	if r.err != nil {
		return nil, r.done()
	}
	if p[0]>>4 != 6 || p[6] != 58 || int(binary.BigEndian.Uint16(p[4:]))+40 != n || p[40] >= 128 {
		r.fail("packet", ErrInvalid)
		return nil, r.done()
	}
	return &ICMPError{Packet: append([]byte(nil), p...)}, nil
}
