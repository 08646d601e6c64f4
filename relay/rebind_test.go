package relay

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

func udpPayload(p []byte) []byte {
	b := make([]byte, 8, 8+len(p))
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(p)))
	return append(b, p...)
}

// TestRebind: a bound UDP carrier moves to another port of its CGNAT
// address only for a token keepalive with its token; an ordinary packet,
// a wrong token, another address or a TCP carrier moves nothing.
func TestRebind(t *testing.T) {
	relayAddr, public := netip.MustParseAddr("198.51.100.6"), netip.MustParseAddr("198.51.100.2")
	s := &Settings{
		Addresses:    []netip.Addr{relayAddr},
		CarrierPorts: config.PortRange{First: 20000, Last: 20015},
		Timers:       config.Timers{UDP: 2 * time.Minute, TCPEstablished: 124 * time.Minute, TCPTransitory: 4 * time.Minute, ICMP: time.Minute},
		Sites:        []Site{{ID: "home", Prefix: netip.MustParsePrefix("2001:db8:5::/56"), MaxFlows: 16}},
	}
	c, err := newAgent(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	const token = proto.BindToken(0x0102030405060708)
	add := func(p session.Proto, port uint16) (session.Flow, *carrier) {
		f := session.Flow{Proto: p, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), port),
			Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
		lease, err := c.ports.Grant("home", public, p)
		if err != nil {
			t.Fatal(err)
		}
		k := &carrier{site: "home", lease: lease, edgePort: 61000, token: token, public: netip.AddrPortFrom(public, 40000+port)}
		c.flows.mu.Lock()
		c.add(f, k)
		c.flows.mu.Unlock()
		return f, k
	}
	f, k := add(session.UDP, 1)
	bound := k.public
	key := func(from netip.AddrPort, k *carrier) xlat.Key {
		return xlat.Key{Proto: uint8(k.lease.Proto), Src: from.Addr(), Dst: relayAddr, SPort: from.Port(), DPort: k.lease.Port}
	}
	moved := netip.AddrPortFrom(public, 50000)

	for name, tc := range map[string]struct {
		from netip.AddrPort
		l4   []byte
		want error
	}{
		"ordinary packet":  {moved, udpPayload([]byte("data")), errBound},
		"plain keepalive":  {moved, udpPayload(xlat.KeepaliveMagic[:]), errBound},
		"wrong token":      {moved, udpPayload(xlat.TokenKeepalive(uint64(token) + 1)), errRebind},
		"another address":  {netip.MustParseAddrPort("198.51.100.3:50000"), udpPayload(xlat.TokenKeepalive(uint64(token))), errNoCarrier},
		"token, truncated": {moved, udpPayload(xlat.TokenKeepalive(uint64(token)))[:20], errBound},
	} {
		if _, err := c.bind(key(tc.from, k), tc.l4, nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if k.public != bound || k.rebinds != 0 {
			t.Fatalf("%s moved the carrier to %v", name, k.public)
		}
	}

	b, err := c.bind(key(moved, k), udpPayload(xlat.TokenKeepalive(uint64(token))), nil)
	if err != nil || !b.proof || b.flow != f || b.carrier.Public != moved {
		t.Fatalf("token keepalive from the new port: %+v, %v", b, err)
	}
	if k.public != moved || k.rebinds != 1 {
		t.Errorf("carrier bound to %v generation %d, want %v generation 1", k.public, k.rebinds, moved)
	}
	// The old port is now the stranger.
	if _, err := c.bind(key(bound, k), udpPayload([]byte("late")), nil); !errors.Is(err, errBound) {
		t.Errorf("packet from the old port: %v", err)
	}

	// TCP carriers have no keepalive to prove themselves with.
	_, kt := add(session.TCP, 2)
	tcpBound := kt.public
	if _, err := c.bind(key(netip.AddrPortFrom(public, 50001), kt), udpPayload(xlat.TokenKeepalive(uint64(token))), nil); !errors.Is(err, errBound) || kt.public != tcpBound {
		t.Errorf("TCP carrier from another port: %v, bound to %v", err, kt.public)
	}

	st := c.status().(carrierStatus)
	if st.Slowpath["rebound"] != 1 || st.Slowpath[errRebind.Error()] != 1 || len(st.Rebound) != 1 || st.Rebound[0].Generation != 1 {
		t.Errorf("status: %+v", st)
	}
}
