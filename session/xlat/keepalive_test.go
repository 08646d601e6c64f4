package xlat

import (
	"encoding/binary"
	"testing"
)

func udpDatagram(payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

func TestKeepaliveToken(t *testing.T) {
	tok, ok := KeepaliveToken(udpDatagram(TokenKeepalive(0xdeadbeef01)))
	if !ok || tok != 0xdeadbeef01 {
		t.Fatalf("token keepalive read as %x, %v", tok, ok)
	}
	for name, p := range map[string][]byte{
		"plain keepalive": KeepaliveMagic[:],
		"one byte more":   append(TokenKeepalive(1), 0),
		"other magic":     append([]byte("unmap-kb"), make([]byte, 8)...),
		"empty":           nil,
	} {
		if _, ok := KeepaliveToken(udpDatagram(p)); ok {
			t.Errorf("%s taken for a token keepalive", name)
		}
	}
}

// FuzzKeepaliveToken: bounded by the datagram and its length field.
func FuzzKeepaliveToken(f *testing.F) {
	f.Add(udpDatagram(TokenKeepalive(7)))
	f.Add([]byte{0, 0, 0, 0, 0, 24})
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, ok := KeepaliveToken(b)
		if ok && binary.BigEndian.Uint64(b[16:24]) != tok {
			t.Fatalf("token %x not the datagram's", tok)
		}
	})
}
