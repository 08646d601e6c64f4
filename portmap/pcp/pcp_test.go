package pcp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// fixture decodes hex with spaces and newlines, laid out as the RFC's
// figures are (one 32-bit word a group).
func fixture(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mapRequest is a MAP request written by hand from RFC 6887 §7.1, §11.1
// and §13.3/§13.4: version 2, opcode MAP, lifetime 3600, client
// 192.0.2.2 (IPv4-mapped), nonce 01..0c, TCP, internal port 8080,
// suggested external port 8080 and address 0.0.0.0, then PREFER_FAILURE
// and a FILTER for 198.51.100.0/24 port 443.
const mapRequest = `
02 01 0000  00000e10
00000000 00000000 0000ffff c0000202
01020304 05060708 090a0b0c
06 000000  1f90 1f90
00000000 00000000 0000ffff 00000000
02 00 0000
03 00 0014  00 78 01bb  00000000 00000000 0000ffff c6336400`

func TestParseMapFixture(t *testing.T) {
	b := fixture(t, mapRequest)
	m, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Opcode: OpMap, Lifetime: 3600, Client: netip.MustParseAddr("192.0.2.2"),
		Map: Map{Nonce: [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, Protocol: 6, InternalPort: 8080,
			ExternalPort: 8080, ExternalAddr: netip.MustParseAddr("0.0.0.0")},
		PreferFailure: true, Filters: []Filter{{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 443}}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", m, want)
	}
	if out := want.Append(nil); !bytes.Equal(out, b) {
		t.Errorf("Append\n%x\nwant\n%x", out, b)
	}
}

// A PEER request (§12.1) with THIRD_PARTY, over IPv6.
const peerRequest = `
02 02 0000  00000078
20010db8 00050000 00000000 00000010
0a0a0a0a 0b0b0b0b 0c0c0c0c
11 000000  1388 0000
00000000 00000000 00000000 00000000
0d05 0000  20010db8 00060000 00000000 00000002
01 00 0010  20010db8 00050000 00000000 00000011`

func TestParsePeerFixture(t *testing.T) {
	b := fixture(t, peerRequest)
	m, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Opcode != OpPeer || m.Lifetime != 120 || m.Client != netip.MustParseAddr("2001:db8:5::10") ||
		m.Map.Protocol != 17 || m.Map.InternalPort != 5000 || m.Peer.RemotePort != 3333 ||
		m.Peer.RemoteAddr != netip.MustParseAddr("2001:db8:6::2") || m.ThirdParty != netip.MustParseAddr("2001:db8:5::11") {
		t.Errorf("parsed %+v", m)
	}
	if out := m.Append(nil); !bytes.Equal(out, b) {
		t.Errorf("Append\n%x\nwant\n%x", out, b)
	}
}

// Every refusal a request can earn from the parser, with its code.
func TestParseRefusals(t *testing.T) {
	good := fixture(t, mapRequest)
	mut := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, c := range []struct {
		name string
		b    []byte
		want Result // 0: ErrDrop
	}{
		{"one byte", []byte{2}, 0},
		{"a response", mut(func(b []byte) []byte { b[1] |= 0x80; return b }), 0},
		{"version 1", mut(func(b []byte) []byte { b[0] = 1; return b }), UnsuppVersion},
		{"not whole words", good[:len(good)-1], MalformedRequest},
		{"oversize", append(append([]byte(nil), good...), make([]byte, MaxSize)...), MalformedRequest},
		{"short payload", good[:24+32], MalformedRequest},
		{"opcode 9", mut(func(b []byte) []byte { b[1] = 9; return b }), UnsuppOpcode},
		{"unknown mandatory option", append(good[:60:60], 0x7f, 0, 0, 0), UnsuppOption},
		{"option past the end", append(good[:60:60], 3, 0, 0, 20), MalformedOption},
		{"prefer_failure with data", append(good[:60:60], 2, 0, 0, 4, 0, 0, 0, 0), MalformedOption},
		{"prefer_failure twice", append(good[:64:64], 2, 0, 0, 0), MalformedOption},
		{"filter prefix too long", mut(func(b []byte) []byte { b[69] = 200; return b }), MalformedOption},
	} {
		_, err := ParseRequest(c.b)
		var pe *Error
		switch {
		case c.want == 0 && !errors.Is(err, ErrDrop):
			t.Errorf("%s: %v, want ErrDrop", c.name, err)
		case c.want != 0 && (!errors.As(err, &pe) || pe.Result != c.want):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// An optional option (128 and up) is skipped.
	if _, err := ParseRequest(append(good[:60:60], 0x80, 0, 0, 1, 9, 0, 0, 0)); err != nil {
		t.Errorf("optional option: %v", err)
	}
	// Every truncation is refused cleanly, never a panic.
	for n := range good {
		_, _ = ParseRequest(good[:n])
		_, _ = ParseResponse(good[:n])
	}
}

// ErrorResponse copies the request, sets R, the result, lifetime and
// epoch, and clears the client address words.
func TestErrorResponse(t *testing.T) {
	req := fixture(t, mapRequest)
	out := ErrorResponse(req, NotAuthorized, 1800, 42)
	m, err := ParseResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Result != NotAuthorized || m.Lifetime != 1800 || m.Epoch != 42 || m.Opcode != OpMap || m.Map.InternalPort != 8080 {
		t.Errorf("%+v", m)
	}
	if len(ErrorResponse([]byte{1, 1}, UnsuppVersion, 1800, 0)) != headerLen {
		t.Error("a short request's error answer is not a whole header")
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(fixture(f, mapRequest))
	f.Add(fixture(f, peerRequest))
	f.Add([]byte{2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseRequest(b)
		if err != nil {
			if len(b) >= 2 {
				// Every refusal has an answer of bounded size.
				if out := ErrorResponse(b, UnsuppVersion, 0, 0); len(out) > MaxSize {
					t.Fatalf("error answer of %d bytes", len(out))
				}
			}
			return
		}
		// What parses writes back to something that parses the same.
		m2, err := ParseRequest(m.Append(nil))
		if err != nil {
			t.Fatalf("re-parse of %+v: %v", m, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip\n%+v\n%+v", m, m2)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(ErrorResponse(fixture(f, mapRequest), Success, 60, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseResponse(b)
	})
}
