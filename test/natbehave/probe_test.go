package natbehave

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"
)

var (
	srvA1 = netip.MustParseAddr("198.51.100.10")
	srvA2 = netip.MustParseAddr("198.51.100.200")
	inAt  = netip.AddrPortFrom(netip.MustParseAddr("100.64.100.2"), 0)
)

func probeFake(t *testing.T, n *fakeNet) (Report, *Server) {
	t.Helper()
	s, err := NewServer(n.listen, srvA1, srvA2, 3478, 3479)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := Prober{Server: s.Primary(), Wait: 20 * time.Millisecond,
		Socket: func() (net.PacketConn, error) { return n.listen("udp4", inAt.String()) }}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r, s
}

var behaviours = []Behaviour{EndpointIndependent, AddressDependent, AddressPortDependent}

// TestProbeTellsEachNAT: behind a NAT of each mapping and each filtering
// behaviour (nine in all) the probe reports those two, and the mapped
// addresses it saw are the NAT's public ones.
func TestProbeTellsEachNAT(t *testing.T) {
	for _, m := range behaviours {
		for _, f := range behaviours {
			t.Run(m.String()+"/"+f.String(), func(t *testing.T) {
				t.Parallel()
				n := newFakeNet(true, m, f)
				r, _ := probeFake(t, n)
				if r.Mapping != m || r.Filtering != f {
					t.Errorf("got %v, want mapping %v, filtering %v", r, m, f)
				}
				want := 3 // the third request only when the first two differ
				if m == EndpointIndependent {
					want = 2
				}
				if len(r.Mapped) != want {
					t.Errorf("mapped %v, want %d addresses", r.Mapped, want)
				}
				for _, a := range r.Mapped {
					if a.Addr() != n.public {
						t.Errorf("mapped %v, not the NAT's public address", a)
					}
				}
				if r.Other != netip.AddrPortFrom(srvA2, 3479) {
					t.Errorf("other %v", r.Other)
				}
			})
		}
	}
}

// TestProbeNoNAT: with nothing between, every answer arrives from where
// it was asked and the source is the socket's own: endpoint-independent
// both ways.
func TestProbeNoNAT(t *testing.T) {
	r, s := probeFake(t, newFakeNet(false, 0, 0))
	if r.Mapping != EndpointIndependent || r.Filtering != EndpointIndependent || r.Mapped[0].Addr() != inAt.Addr() {
		t.Errorf("got %v", r)
	}
	// Mapping: 2 requests; filtering: test I and the change-both answer.
	if c := s.Counts(); c["requests"] != 4 || c["answers"] != 4 {
		t.Errorf("server counts %v", c)
	}
}

// TestProbeWaitsForMapping: a NAT that drops a new mapping's first three
// datagrams (as the relay's CGNAT does while it grants a block) still
// reads right: the requests that must be answered are sent again.
func TestProbeWaitsForMapping(t *testing.T) {
	n := newFakeNet(true, EndpointIndependent, AddressDependent)
	n.dropFirst = 3
	if r, _ := probeFake(t, n); r.Mapping != EndpointIndependent || r.Filtering != AddressDependent {
		t.Errorf("got %v", r)
	}
}

// TestProbeNoServer: nothing answers: an error, not a behaviour, within
// Tries x Wait.
func TestProbeNoServer(t *testing.T) {
	n := newFakeNet(true, 0, 0)
	p := Prober{Server: netip.AddrPortFrom(srvA1, 3478), Wait: 10 * time.Millisecond, Tries: 3,
		Socket: func() (net.PacketConn, error) { return n.listen("udp4", inAt.String()) }}
	start := time.Now()
	if r, err := p.Run(context.Background()); err == nil {
		t.Errorf("no server, got %v", r)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("gave up after %v", d)
	}
}

// TestServerCountsDrops: what is not a request is dropped, each under its
// reason, and not answered.
func TestServerCountsDrops(t *testing.T) {
	n := newFakeNet(false, 0, 0)
	s, err := NewServer(n.listen, srvA1, srvA2, 3478, 3479)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, _ := n.listen("udp4", inAt.String())
	defer c.Close()
	resp := Message{Type: Response}.Append(nil)
	for _, b := range [][]byte{[]byte("x"), []byte("not a natbehave message!"), resp, append(Message{Type: Request}.Append(nil), 0)} {
		if _, err := c.WriteTo(b, net.UDPAddrFromAddrPort(s.Primary())); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{"drop-short": 1, "drop-magic": 1, "drop-type": 1, "drop-length": 1}
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := s.Counts()
		if maps.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := c.ReadFrom(make([]byte, 64)); err == nil {
		t.Error("a dropped message was answered")
	}
}

// TestNewServerRefuses: one address twice, one port twice, or mixed
// families: no server.
func TestNewServerRefuses(t *testing.T) {
	n := newFakeNet(false, 0, 0)
	for _, c := range []struct {
		a1, a2 netip.Addr
		p1, p2 uint16
	}{{srvA1, srvA1, 1, 2}, {srvA1, srvA2, 1, 1}, {srvA1, netip.MustParseAddr("2001:db8::1"), 1, 2}, {srvA1, srvA2, 0, 2}} {
		if s, err := NewServer(n.listen, c.a1, c.a2, c.p1, c.p2); err == nil {
			s.Close()
			t.Errorf("%+v: a server", c)
		}
	}
}
