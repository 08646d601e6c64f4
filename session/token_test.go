package session

import "testing"

func TestTCPToken(t *testing.T) {
	tcp := make([]byte, 20)
	tcp[4], tcp[7] = 0x12, 0x34
	// NATs rewrite ports and checksums; the token is the sequence number.
	tcp[0], tcp[1], tcp[16] = 9, 9, 9
	if tok, ok := TCPToken(tcp); !ok || tok != 0x12000034 {
		t.Errorf("tcp token %#x %v", tok, ok)
	}
	if _, ok := TCPToken(make([]byte, 19)); ok {
		t.Error("token from 19 bytes")
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		s := NewSecret()
		if s == 0 || seen[s] {
			t.Fatalf("secret %#x: zero or repeated", s)
		}
		seen[s] = true
	}
}
