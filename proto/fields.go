package proto

import (
	"encoding/binary"
	"net/netip"

	"github.com/unmap-dev/unmap/session"
)

// Field encodings shared by the messages. All integers are big-endian.
// An address is 16 bytes, IPv4 as IPv4-mapped IPv6 (as in PCP, RFC 6887
// §5); 16 zero bytes mean "no address". A prefix is its length in bits
// (counted in the address's own family) then the address.
const (
	addrLen     = 16
	addrPortLen = addrLen + 2
	prefixLen   = 1 + addrLen
	flowLen     = 1 + 2*addrPortLen
)

func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		var zero [addrLen]byte
		return append(b, zero[:]...)
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	return binary.BigEndian.AppendUint16(appendAddr(b, ap.Addr()), ap.Port())
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	if !p.IsValid() {
		return appendAddr(append(b, 0), netip.Addr{})
	}
	return appendAddr(append(b, uint8(p.Bits())), p.Addr())
}

func appendFlow(b []byte, f session.Flow) []byte {
	b = append(b, uint8(f.Proto))
	return appendAddrPort(appendAddrPort(b, f.Site), f.Remote)
}

func appendPorts(b []byte, r PortRange) []byte {
	b = binary.BigEndian.AppendUint16(b, r.First)
	return binary.BigEndian.AppendUint16(b, r.Last)
}

// reader decodes one body. The first error sticks: later reads return
// zero values, so a parse function reads every field and checks r.err
// once at the end. Every read is bounded by the body.
type reader struct {
	t   Type
	b   []byte
	err error
}

func (r *reader) fail(field string, err error) {
	if r.err == nil {
		r.err = &FieldError{Type: r.t, Field: field, Err: err}
	}
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(field, ErrTruncated)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(field string) uint8 {
	if b := r.take(field, 1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if b := r.take(field, 2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if b := r.take(field, 4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if b := r.take(field, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) addr(field string) netip.Addr {
	b := r.take(field, addrLen)
	if b == nil {
		return netip.Addr{}
	}
	a := netip.AddrFrom16([addrLen]byte(b))
	if a.IsUnspecified() {
		return netip.Addr{} // all zeros: no address
	}
	return a.Unmap()
}

func (r *reader) addrPort(field string) netip.AddrPort {
	a := r.addr(field)
	p := r.u16(field)
	if !a.IsValid() {
		if p != 0 {
			r.fail(field, ErrInvalid) // a port without an address
		}
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, p)
}

func (r *reader) prefix(field string) netip.Prefix {
	bits := int(r.u8(field))
	a := r.addr(field)
	if r.err != nil {
		return netip.Prefix{}
	}
	if !a.IsValid() {
		if bits != 0 {
			r.fail(field, ErrInvalid)
		}
		return netip.Prefix{}
	}
	p := netip.PrefixFrom(a, bits)
	if !p.IsValid() || p != p.Masked() {
		r.fail(field, ErrInvalid) // too many bits, or host bits set
		return netip.Prefix{}
	}
	return p
}

// flow reads a flow and checks what every flow must be: a protocol, and
// two endpoints of the same family.
func (r *reader) flow(field string) session.Flow {
	// One name for the three parts: building "flow.site" here would
	// allocate on every parse.
	f := session.Flow{Proto: session.Proto(r.u8(field))}
	f.Site = r.addrPort(field)
	f.Remote = r.addrPort(field)
	if r.err != nil {
		return session.Flow{}
	}
	if f.Proto == 0 || !f.Site.IsValid() || !f.Remote.IsValid() || f.Site.Addr().Is4() != f.Remote.Addr().Is4() {
		r.fail(field, ErrInvalid)
		return session.Flow{}
	}
	return f
}

func (r *reader) ports(field string) PortRange {
	p := PortRange{First: r.u16(field), Last: r.u16(field)}
	if p.First > p.Last {
		r.fail(field, ErrInvalid)
	}
	return p
}

// str reads a string of one length byte and up to max bytes.
func (r *reader) str(field string, max int) string {
	n := int(r.u8(field))
	if n > max {
		r.fail(field, ErrInvalid)
		return ""
	}
	return string(r.take(field, n))
}

// count reads a list length of width bytes and checks it against max and
// against the bytes left, so a list never allocates more than its body.
func (r *reader) count(field string, width, max, elemLen int) int {
	var n int
	if width == 1 {
		n = int(r.u8(field))
	} else {
		n = int(r.u16(field))
	}
	if r.err != nil {
		return 0
	}
	if n > max {
		r.fail(field, ErrInvalid)
		return 0
	}
	if n*elemLen > len(r.b) {
		r.fail(field, ErrTruncated)
		return 0
	}
	return n
}

// done returns the sticky error. Bytes after the known fields are ignored:
// that is how a later minor version appends fields (SPEC.md, Versions).
func (r *reader) done() error { return r.err }
