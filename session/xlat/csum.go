package xlat

import "encoding/binary"

// delta accumulates a ones'-complement change to a checksum (RFC 1624):
// words removed from the covered data and words added to it.
type delta uint64

func (d *delta) add16(w uint16) { *d += delta(w) }
func (d *delta) sub16(w uint16) { *d += delta(0xffff - w) }

func (d *delta) add(b []byte) {
	for i := 0; i+1 < len(b); i += 2 {
		d.add16(binary.BigEndian.Uint16(b[i:]))
	}
}

func (d *delta) sub(b []byte) {
	for i := 0; i+1 < len(b); i += 2 {
		d.sub16(binary.BigEndian.Uint16(b[i:]))
	}
}

func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// apply returns checksum old updated by d: HC' = ~(~HC + ~m + m').
func (d delta) apply(old uint16) uint16 { return ^fold(uint64(^old) + uint64(d)) }

// sum16 is the ones'-complement sum of b (even length).
func sum16(b []byte) uint16 {
	var s uint64
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	return fold(s)
}

// ipv4Csum is the header checksum of a 20-byte IPv4 header whose checksum
// field is zero.
func ipv4Csum(h []byte) uint16 { return ^sum16(h[:20]) }
