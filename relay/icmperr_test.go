package relay

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/xdp"
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

// routerError6 is an Ethernet frame with a router's ICMPv6 time exceeded
// to host about its UDP packet to remote:33434, hop limit hop.
func routerError6(host netip.Addr, sport uint16, remote netip.Addr, hop uint8, pad int) []byte {
	probe := xlattest.Build(xlattest.Spec{Proto: 17, Src: host, SPort: sport, Dst: remote, DPort: 33434, TTL: 1, Payload: make([]byte, pad)})
	return xlattest.Build(xlattest.Spec{Proto: 58, Src: netip.MustParseAddr("2001:db8:1::1"), Dst: host, TTL: hop,
		ICMPType: 3, Payload: probe[14:]})
}

// The relay refuses, and counts, every error it cannot hand to a live
// session's edge: not about a flow, no session, cut, addressed to another
// host, no hop left, over 1280 bytes.
func TestRelayICMPErrorRefusals(t *testing.T) {
	s := &Settings{
		Addresses:    []netip.Addr{netip.MustParseAddr("198.51.100.6")},
		CarrierPorts: config.PortRange{First: 20000, Last: 20015},
		Sites:        []Site{{ID: "home", Prefix: netip.MustParsePrefix("2001:db8:5::/56"), MaxFlows: 16}},
	}
	c, err := newAgent(s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	host, remote := netip.MustParseAddr("2001:db8:5::2"), netip.MustParseAddr("2001:db8:6::2")
	f := session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(host, 40000), Remote: netip.AddrPortFrom(remote, 33434)}
	c.flows.mu.Lock()
	c.add(f, &carrier{site: "home"})
	c.flows.mu.Unlock()
	send := func(frame []byte, caplen int) {
		t.Helper()
		k, ok := xlat.ErrorKey(frame)
		if !ok {
			t.Fatalf("not an error: %x", frame)
		}
		c.relayICMPError(k, xdp.Miss{Len: len(frame), Data: frame[:caplen]})
	}
	ok := routerError6(host, 40000, remote, 64, 0)
	send(routerError6(host, 40001, remote, 64, 0), len(ok)) // not a flow
	send(ok, len(ok))                                       // a flow, but no session
	send(ok, len(ok)-1)                                     // cut
	send(routerError6(host, 40000, remote, 1, 0), len(ok))  // no hop left
	big := routerError6(host, 40000, remote, 64, 1300)      // 1300-byte probe quoted whole
	send(big, len(big))                                     // over 1280
	other := append([]byte(nil), ok...)
	other[14+24+15] ^= 1 // the outer destination: another host
	send(other, len(other))
	want := map[string]uint64{"icmp-err-not-flow": 1, "icmp-err-no-session": 1, "icmp-err-truncated": 1,
		"icmp-err-malformed": 1, "icmp-err-hop-limit": 1, "icmp-err-too-long": 1}
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	for k, v := range want {
		if c.m.Snapshot()[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, c.m.Snapshot()[k], v, c.m.Snapshot())
		}
	}
	if c.m.Snapshot()["icmp-err-relayed"] != 0 {
		t.Error("relayed an error without a session")
	}
}
