package session

import "testing"

func TestToken(t *testing.T) {
	tcp := make([]byte, 20)
	tcp[4], tcp[7] = 0x12, 0x34
	if tok, ok := Token(TCP, tcp); !ok || tok != 0x12000034 {
		t.Errorf("tcp token %#x %v", tok, ok)
	}
	// NATs rewrite ports and checksums; the token must not change with them.
	a := []byte{1, 2, 3, 4, 0, 12, 9, 9, 'h', 'i', '!', '?'}
	b := []byte{5, 6, 7, 8, 0, 12, 1, 1, 'h', 'i', '!', '?'}
	ta, _ := Token(UDP, a)
	tb, _ := Token(UDP, b)
	if ta != tb {
		t.Error("udp token depends on ports or checksum")
	}
	b[11] = '.'
	if tc, _ := Token(UDP, b); tc == ta {
		t.Error("udp token ignores the payload")
	}
	// ICMPv6 echo becomes ICMP echo: type, checksum and identifier change.
	e6 := []byte{128, 0, 1, 2, 0, 7, 0, 1, 'x'}
	e4 := []byte{8, 0, 3, 4, 0, 99, 0, 1, 'x'}
	t6, _ := Token(ICMPv6, e6)
	t4, _ := Token(ICMP, e4)
	if t6 != t4 {
		t.Error("echo token changes across translation")
	}
	for _, p := range []Proto{TCP, UDP, ICMP, 132} {
		if _, ok := Token(p, make([]byte, 7)); ok {
			t.Errorf("%v: token from 7 bytes", p)
		}
	}
}

func TestCarrierToken(t *testing.T) {
	echo := []byte{128, 0, 1, 2, 0, 7, 0, 1, 'x'}
	carrier := append([]byte{0xee, 0x48, 0x4e, 0x20, 0, 17, 0, 0}, echo...) // UDP header + the echo, as wrapped
	want, _ := Token(UDP, carrier)
	if got, ok := CarrierToken(ICMPv6, UDP, echo); !ok || got != want {
		t.Errorf("wrapped echo token %#x, relay computes %#x", got, want)
	}
	tcp := make([]byte, 20)
	tcp[7] = 9
	if got, _ := CarrierToken(TCP, TCP, tcp); got != 9 {
		t.Errorf("native tcp token %d", got)
	}
}
