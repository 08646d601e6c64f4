package cgnat

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/portmap"
)

// FuzzDecodePin: a pinned mapping's bytes, whatever a previous program
// (or a corruption) left, decode or are refused without a panic, and
// what decodes encodes back to the same bytes (the pad bytes aside).
func FuzzDecodePin(f *testing.F) {
	m := portmap.Mapping{Proto: portmap.UDP, Internal: netip.MustParseAddrPort("100.64.0.5:5000"), Client: netip.MustParseAddr("100.64.0.5"),
		External: netip.MustParseAddrPort("203.0.113.64:40961"), Via: portmap.ViaPCP, Nonce: [12]byte{1, 2, 3}, Expires: time.Unix(1800000000, 0)}
	f.Add(pinKey(keyOf(m)), encodePin(m, true))
	f.Add(make([]byte, mapPinsKeySize), make([]byte, mapPinsValueSize))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		got, implicit, err := decodePin(k, v)
		if err != nil {
			return
		}
		if !bytes.Equal(pinKey(keyOf(got))[:7], k[:7]) {
			t.Fatalf("key %x decoded to %+v", k, got)
		}
		back := encodePin(got, implicit)
		if !bytes.Equal(back[:20], v[:20]) || !bytes.Equal(back[24:], v[24:]) {
			t.Fatalf("value %x decoded to %+v, encodes to %x", v, got, back)
		}
	})
}
