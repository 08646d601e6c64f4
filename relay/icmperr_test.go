package relay

import (
	"net/netip"
	"testing"
)

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
