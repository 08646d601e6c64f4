package natpmp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// Fixtures written from RFC 6886 §3.2 and §3.3.
func TestFixtures(t *testing.T) {
	mapTCP := []byte{0, 2, 0, 0, 0x1f, 0x90, 0x1f, 0x91, 0, 0, 0x1c, 0x20} // TCP 8080 → 8081, 7200 s
	r, err := ParseRequest(mapTCP)
	if err != nil || *r != (Request{Opcode: OpMapTCP, InternalPort: 8080, ExternalPort: 8081, Lifetime: 7200}) {
		t.Fatalf("%+v %v", r, err)
	}
	if !bytes.Equal(r.Append(nil), mapTCP) {
		t.Error("Append differs")
	}
	addr := (&Response{Opcode: OpExternalAddress, Epoch: 5, External: netip.MustParseAddr("203.0.113.5")}).Append(nil)
	if want := []byte{0, 128, 0, 0, 0, 0, 0, 5, 203, 0, 113, 5}; !bytes.Equal(addr, want) {
		t.Errorf("address response %x, want %x", addr, want)
	}
	m := (&Response{Opcode: OpMapUDP, Epoch: 1, InternalPort: 9, ExternalPort: 10, Lifetime: 60}).Append(nil)
	if want := []byte{0, 129, 0, 0, 0, 0, 0, 1, 0, 9, 0, 10, 0, 0, 0, 60}; !bytes.Equal(m, want) {
		t.Errorf("map response %x, want %x", m, want)
	}
	for _, c := range []struct {
		b    []byte
		want uint16 // 0: ErrDrop
	}{
		{[]byte{0}, 0},
		{[]byte{0, 129}, 0},
		{[]byte{1, 0}, UnsupportedVersion},
		{[]byte{0, 3}, UnsupportedOpcode},
		{mapTCP[:11], 0},
		{make([]byte, MaxSize+1), 0},
	} {
		_, err := ParseRequest(c.b)
		var ne *Error
		if c.want == 0 && !errors.Is(err, ErrDrop) || c.want != 0 && (!errors.As(err, &ne) || ne.Result != c.want) {
			t.Errorf("%x: %v, want %d", c.b, err, c.want)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 0x1f, 0x90, 0x1f, 0x91, 0, 0, 0x1c, 0x20})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		r2, err := ParseRequest(r.Append(nil))
		if err != nil || *r2 != *r {
			t.Fatalf("round trip %+v → %+v %v", r, r2, err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add((&Response{Opcode: OpMapUDP, InternalPort: 9, ExternalPort: 10, Lifetime: 60}).Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseResponse(b) })
}
