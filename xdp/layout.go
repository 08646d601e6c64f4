package xdp

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"github.com/unmap-dev/unmap/session/xlat"
)

// Compile-time size checks: the generated C mirrors and the model's wire
// sizes must agree (either difference going negative fails to compile).
var (
	_ [unsafe.Sizeof(datapathFlowKey{}) - xlat.KeySize]struct{}
	_ [xlat.KeySize - unsafe.Sizeof(datapathFlowKey{})]struct{}
	_ [unsafe.Sizeof(datapathFlowEntry{}) - xlat.EntrySize]struct{}
	_ [xlat.EntrySize - unsafe.Sizeof(datapathFlowEntry{})]struct{}
)

// missHdrLen is the size of struct miss_rec before its data.
const missHdrLen = 16

// The generated structs hold multi-byte fields in host (little-endian)
// order; network-order fields are filled so their bytes in memory equal
// the model's encoding.

func cKey(k xlat.Key) (datapathFlowKey, error) {
	b, err := k.MarshalBinary()
	if err != nil {
		return datapathFlowKey{}, err
	}
	return datapathFlowKey{
		Family: b[0], Proto: b[1],
		Sport: le16(b[2:]), Dport: le16(b[4:]),
		Saddr: words(b[8:24]), Daddr: words(b[24:40]),
	}, nil
}

func cEntry(e xlat.Entry) (datapathFlowEntry, error) {
	b, err := e.MarshalBinary()
	if err != nil {
		return datapathFlowEntry{}, err
	}
	return datapathFlowEntry{
		Action: b[0], Proto: b[1],
		Sport: le16(b[4:]), Dport: le16(b[6:]),
		Saddr: words(b[8:24]), Daddr: words(b[24:40]),
	}, nil
}

// mapped is an address as the local and prefix maps store it: IPv6, with
// IPv4 as ::ffff:a.b.c.d.
func mapped(a netip.Addr) [4]uint32 {
	b := a.As16()
	return words(b[:])
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }

func words(b []byte) (w [4]uint32) {
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}
