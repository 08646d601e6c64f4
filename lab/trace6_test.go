package lab

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// quote is the start of a probe as an ICMPv6 error quotes it: the IPv6
// header and the UDP header.
func quote(next byte, dst netip.Addr, sport, dport uint16) []byte {
	q := make([]byte, 48)
	q[0], q[6] = 0x60, next
	d := dst.As16()
	copy(q[24:40], d[:])
	binary.BigEndian.PutUint16(q[40:], sport)
	binary.BigEndian.PutUint16(q[42:], dport)
	return q
}

// TestQuotesProbe: an error is matched to a probe by the quoted
// destination, protocol and both ports; anything shorter than the two
// headers, or another flow, is not the probe's.
func TestQuotesProbe(t *testing.T) {
	dst := netip.MustParseAddr("2001:db8:6::2")
	tr := tracer{dst: dst, lport: 40000}
	if !tr.quotesProbe(quote(17, dst, 40000, 33435), 33435) {
		t.Error("the probe's own quote not matched")
	}
	for name, q := range map[string][]byte{
		"other port":      quote(17, dst, 40000, 33436),
		"other source":    quote(17, dst, 40001, 33435),
		"other dst":       quote(17, netip.MustParseAddr("2001:db8:6::3"), 40000, 33435),
		"tcp":             quote(6, dst, 40000, 33435),
		"truncated":       quote(17, dst, 40000, 33435)[:47],
		"empty":           nil,
		"not ipv6 header": append([]byte{0x45}, quote(17, dst, 40000, 33435)[1:]...),
	} {
		if tr.quotesProbe(q, 33435) {
			t.Errorf("%s: matched", name)
		}
	}
}

// FuzzQuotesProbe: any quote is read within its bounds.
func FuzzQuotesProbe(f *testing.F) {
	f.Add(quote(17, netip.MustParseAddr("2001:db8:6::2"), 40000, 33435))
	f.Add([]byte{0x60})
	tr := tracer{dst: netip.MustParseAddr("2001:db8:6::2"), lport: 40000}
	f.Fuzz(func(t *testing.T, q []byte) { tr.quotesProbe(q, 33435) })
}
