package natbehave

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func sample() []Message {
	return []Message{
		{Type: Request, ID: TxID{1, 2, 3}},
		{Type: Request, Flags: FlagChangeAddr | FlagChangePort, ID: TxID{9: 9}},
		{Type: Response, Flags: FlagChangePort, ID: TxID{4},
			Mapped: netip.MustParseAddrPort("203.0.113.64:40961"), Other: netip.MustParseAddrPort("198.51.100.200:3479")},
		{Type: Response, Mapped: netip.MustParseAddrPort("[2001:db8::1]:5"), Other: netip.MustParseAddrPort("[2001:db8::2]:6")},
	}
}

// TestRoundTrip: each message parses back to itself, at its length.
func TestRoundTrip(t *testing.T) {
	for _, m := range sample() {
		b := m.Append(nil)
		if len(b) != m.Len() {
			t.Errorf("%+v: %d bytes, Len %d", m, len(b), m.Len())
		}
		got, err := Parse(b)
		if err != nil || got != m {
			t.Errorf("%+v: parsed %+v, %v", m, got, err)
		}
	}
}

// TestParseRefuses: every truncated prefix and every one-byte extension of
// a message, a wrong magic, type, flag or reserved byte: each a clean
// error of its kind.
func TestParseRefuses(t *testing.T) {
	for _, m := range sample() {
		b := m.Append(nil)
		for n := range len(b) {
			want := ErrShort
			if n >= headerLen {
				want = ErrLength
			}
			if _, err := Parse(b[:n]); !errors.Is(err, want) {
				t.Errorf("%v cut to %d bytes: %v, want %v", m.Type, n, err, want)
			}
		}
		if _, err := Parse(append(b, 0)); !errors.Is(err, ErrLength) {
			t.Errorf("%v one byte long: %v", m.Type, err)
		}
		for _, c := range []struct {
			at   int
			v    byte
			want error
		}{{0, 'x', ErrMagic}, {3, '2', ErrMagic}, {4, 0, ErrType}, {4, 3, ErrType}, {5, 4, ErrFlags}, {6, 1, ErrFlags}, {7, 1, ErrFlags}} {
			bad := bytes.Clone(b)
			bad[c.at] = c.v
			if _, err := Parse(bad); !errors.Is(err, c.want) {
				t.Errorf("%v with byte %d = %d: %v, want %v", m.Type, c.at, c.v, err, c.want)
			}
		}
	}
}

// FuzzParse: any bytes parse or fail cleanly; what parses encodes back
// to the same bytes.
func FuzzParse(f *testing.F) {
	for _, m := range sample() {
		f.Add(m.Append(nil))
	}
	f.Add([]byte("unb1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if reason(err) == "other" {
				t.Fatalf("an error with no reason: %v", err)
			}
			return
		}
		if out := m.Append(nil); !bytes.Equal(out, b) {
			t.Fatalf("%x parsed as %+v, encodes as %x", b, m, out)
		}
	})
}
