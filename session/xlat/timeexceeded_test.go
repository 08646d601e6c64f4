package xlat_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

func TestTimeExceeded(t *testing.T) {
	relay := netip.MustParseAddr("198.51.100.6")
	edge := netip.MustParseAddr("2001:db8:5::1")
	for _, size := range []int{0, 1, 2, 1300} { // odd payloads, and one cut to 1280 bytes
		pl := bytes.Repeat([]byte{0xa5}, size)
		c4 := xlattest.Build(xlattest.Spec{Proto: 17, Src: xlattest.CGNATPub, SPort: 20001, Dst: relay, DPort: 30000, TTL: 1, Payload: pl})
		c6 := xlattest.Build(xlattest.Spec{Proto: 17, Src: xlattest.SiteHost, SPort: 40000, Dst: xlattest.Remote6, DPort: 33434, TTL: 1, Payload: pl})
		for _, tc := range []struct {
			name  string
			frame []byte
			out   []byte
			max   int
		}{
			{"v4", c4, xlat.TimeExceeded4(relay, c4[14:]), 20 + 8 + 28},
			{"v6", c6, xlat.TimeExceeded6(edge, c6[14:]), 1280},
		} {
			if tc.out == nil {
				t.Fatalf("%s %d: no message", tc.name, size)
			}
			if len(tc.out) > tc.max {
				t.Errorf("%s %d: %d bytes, more than %d", tc.name, size, len(tc.out), tc.max)
			}
			et := append([]byte{12: 0x08, 13: 0x00}, tc.out...)
			if tc.name == "v6" {
				et[12], et[13] = 0x86, 0xdd
			}
			if err := xlattest.VerifyChecksums(et); err != nil {
				t.Errorf("%s %d: %v", tc.name, size, err)
			}
			// It is an error about the packet: keyed by its tuple, reversed.
			k, ok := xlat.ErrorKey(et)
			if src := srcOf(tc.frame[14:]); !ok || k.Dst != src || k.DPort != 20001 && k.DPort != 40000 {
				t.Errorf("%s %d: key %v ok %v, want to %v", tc.name, size, k, ok, src)
			}
		}
	}
	if xlat.TimeExceeded4(relay, []byte{0x46, 0}) != nil || xlat.TimeExceeded6(edge, make([]byte, 39)) != nil {
		t.Error("answered a runt")
	}
}

// srcOf is IP packet ip's source address.
func srcOf(ip []byte) netip.Addr {
	if ip[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(ip[12:16]))
	}
	return netip.AddrFrom16([16]byte(ip[8:24]))
}
