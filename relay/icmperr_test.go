package relay

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

func TestTimeExceeded4(t *testing.T) {
	relay := netip.MustParseAddr("198.51.100.6")
	// A UDP carrier from the CGNAT's public side, TTL 1, with a payload.
	in := make([]byte, 20+8+100)
	in[0], in[8], in[9] = 0x45, 1, 17
	binary.BigEndian.PutUint16(in[2:], uint16(len(in)))
	copy(in[12:16], []byte{198, 51, 100, 2})
	copy(in[16:20], []byte{198, 51, 100, 6})
	binary.BigEndian.PutUint16(in[20:], 40000)
	binary.BigEndian.PutUint16(in[22:], 20001)
	out := timeExceeded4(relay, in)
	if len(out) != 20+8+28 {
		t.Fatalf("length %d, want header, ICMP and 28 bytes quoted", len(out))
	}
	if csum(out[:20]) != 0 || csum(out[20:]) != 0 {
		t.Error("bad checksum")
	}
	if netip.AddrFrom4([4]byte(out[12:16])) != relay || netip.AddrFrom4([4]byte(out[16:20])) != netip.MustParseAddr("198.51.100.2") {
		t.Errorf("addresses %v -> %v", out[12:16], out[16:20])
	}
	if out[9] != 1 || out[20] != 11 || out[21] != 0 || binary.BigEndian.Uint16(out[28+20:]) != 40000 {
		t.Errorf("not a time exceeded quoting the carrier: % x", out[:52])
	}
	if timeExceeded4(relay, in[:19]) != nil || timeExceeded4(relay, append([]byte{0x46}, in[1:]...)) != nil {
		t.Error("answered a packet that is not plain IPv4")
	}
}

func TestTTLExpired(t *testing.T) {
	relay := netip.MustParseAddr("198.51.100.6")
	f := make([]byte, 14+20)
	f[12], f[13], f[14], f[22] = 0x08, 0x00, 0x45, 1
	copy(f[30:34], relay.AsSlice())
	if !ttlExpired(f, relay) {
		t.Error("TTL 1 to the relay not seen")
	}
	f[22] = 2
	if ttlExpired(f, relay) {
		t.Error("TTL 2 taken for expired")
	}
	f[22] = 0
	if ttlExpired(f, netip.MustParseAddr("198.51.100.7")) || ttlExpired(f[:33], relay) {
		t.Error("expired for another address, or a runt")
	}
}

func TestLimiter(t *testing.T) {
	var l limiter
	now := time.Unix(1000, 0)
	n := 0
	for range 2 * icmpErrBurst {
		if l.allow("home", now) {
			n++
		}
	}
	if n != icmpErrBurst {
		t.Errorf("allowed %d at once, want the burst %d", n, icmpErrBurst)
	}
	if !l.allow("other", now) {
		t.Error("one site's burst limited another")
	}
	if !l.allow("home", now.Add(time.Second/icmpErrRate*2)) {
		t.Error("no token back after two periods")
	}
}
