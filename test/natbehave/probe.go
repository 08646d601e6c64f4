package natbehave

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// Behaviour is how a NAT maps, or how it filters (RFC 4787 section 4.1
// and 5): what depends on the remote endpoint.
type Behaviour uint8

const (
	EndpointIndependent  Behaviour = iota // nothing: one mapping, open to all
	AddressDependent                      // the remote address
	AddressPortDependent                  // the remote address and port
)

// String is the RFC's name, as relay.yaml's cgnat.filtering spells it.
func (b Behaviour) String() string {
	switch b {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressPortDependent:
		return "address-and-port-dependent"
	}
	return fmt.Sprintf("behaviour-%d", uint8(b))
}

// Report is what a probe found.
type Report struct {
	Mapping, Filtering Behaviour
	// Mapped are the source address:ports the server saw the mapping
	// test's one socket from: to its primary, its other address, and its
	// other address and port (the third only when the first two agree).
	Mapped []netip.AddrPort
	// Other is the server's other address and port, from its answers.
	Other netip.AddrPort
}

func (r Report) String() string {
	return fmt.Sprintf("mapping %v, filtering %v (mapped %v)", r.Mapping, r.Filtering, r.Mapped)
}

// Prober runs RFC 5780's mapping and filtering tests (its sections 4.3
// and 4.4) against a Server from behind the NAT under test.
type Prober struct {
	// Server is the server's primary address:port.
	Server netip.AddrPort
	// Socket opens a fresh local UDP socket: each test needs a mapping
	// of its own (the mapping test's packets to the server's other
	// address would open the filter the filtering test looks at).
	Socket func() (net.PacketConn, error)
	// Wait is how long one try waits for its answer (zero: 300 ms).
	Wait time.Duration
	// Tries bounds the tries of an exchange that must be answered (zero:
	// 10: a NAT may drop a new mapping's first packets while it sets
	// the mapping up); Absent, of one that may rightly go unanswered
	// (zero: 3). An answer filtered away costs Absent x Wait.
	Tries, Absent int
}

// ErrNoAnswer: an exchange that must be answered never was.
var ErrNoAnswer = errors.New("natbehave: no answer")

// Run runs the mapping test, then the filtering test.
func (p Prober) Run(ctx context.Context) (Report, error) {
	var r Report
	var err error
	if r.Mapping, r.Mapped, r.Other, err = p.Mapping(ctx); err != nil {
		return r, err
	}
	r.Filtering, err = p.Filtering(ctx)
	return r, err
}

// Mapping: from one socket, binding requests to the server's primary
// (mapped X1), to its other address with the primary port (X2), and, if
// X1 = X2 is not so, to its other address and port (X3). X1 = X2:
// endpoint-independent; X2 = X3: address-dependent; else address-and-
// port-dependent.
func (p Prober) Mapping(ctx context.Context) (Behaviour, []netip.AddrPort, netip.AddrPort, error) {
	c, err := p.Socket()
	if err != nil {
		return 0, nil, netip.AddrPort{}, err
	}
	defer c.Close()
	r1, err := p.must(ctx, c, p.Server, 0, p.Server)
	if err != nil {
		return 0, nil, netip.AddrPort{}, fmt.Errorf("test I: %w", err)
	}
	other := r1.Other
	if !other.IsValid() || other.Addr() == p.Server.Addr() || other.Port() == p.Server.Port() {
		return 0, nil, other, fmt.Errorf("test I: the server's other address:port is %v", other)
	}
	to2 := netip.AddrPortFrom(other.Addr(), p.Server.Port())
	r2, err := p.must(ctx, c, to2, 0, to2)
	if err != nil {
		return 0, nil, other, fmt.Errorf("test II (to %v): %w", to2, err)
	}
	mapped := []netip.AddrPort{r1.Mapped, r2.Mapped}
	if r1.Mapped == r2.Mapped {
		return EndpointIndependent, mapped, other, nil
	}
	r3, err := p.must(ctx, c, other, 0, other)
	if err != nil {
		return 0, mapped, other, fmt.Errorf("test III (to %v): %w", other, err)
	}
	mapped = append(mapped, r3.Mapped)
	if r2.Mapped == r3.Mapped {
		return AddressDependent, mapped, other, nil
	}
	return AddressPortDependent, mapped, other, nil
}

// Filtering: a fresh socket's mapping made by a request to the primary;
// then a request asking for the answer from the other address and port:
// it arrives, endpoint-independent; else one asking for the answer from
// the other port of the primary address: it arrives, address-dependent;
// else address-and-port-dependent.
func (p Prober) Filtering(ctx context.Context) (Behaviour, error) {
	c, err := p.Socket()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r1, err := p.must(ctx, c, p.Server, 0, p.Server)
	if err != nil {
		return 0, fmt.Errorf("test I: %w", err)
	}
	if ok, err := p.may(ctx, c, FlagChangeAddr|FlagChangePort, r1.Other); err != nil || ok {
		return EndpointIndependent, err
	}
	from := netip.AddrPortFrom(p.Server.Addr(), r1.Other.Port())
	if ok, err := p.may(ctx, c, FlagChangePort, from); err != nil || ok {
		return AddressDependent, err
	}
	return AddressPortDependent, nil
}

func (p Prober) must(ctx context.Context, c net.PacketConn, to netip.AddrPort, f Flags, from netip.AddrPort) (Message, error) {
	m, ok, err := p.exchange(ctx, c, to, f, from, cmp(p.Tries, 10))
	if err == nil && !ok {
		err = ErrNoAnswer
	}
	return m, err
}

func (p Prober) may(ctx context.Context, c net.PacketConn, f Flags, from netip.AddrPort) (bool, error) {
	_, ok, err := p.exchange(ctx, c, p.Server, f, from, cmp(p.Absent, 3))
	return ok, err
}

func cmp(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// exchange sends one request (the same id each try, so a late answer to
// an earlier try counts) and waits for its answer, which must come from
// the address:port from: an answer from anywhere else is an error (a
// server or a NAT that rewrote the source), as is a mangled one. Other
// datagrams (answers of earlier exchanges) are read past.
func (p Prober) exchange(ctx context.Context, c net.PacketConn, to netip.AddrPort, f Flags, from netip.AddrPort, tries int) (Message, bool, error) {
	req := Message{Type: Request, Flags: f}
	if _, err := rand.Read(req.ID[:]); err != nil {
		return Message{}, false, err
	}
	wait := p.Wait
	if wait <= 0 {
		wait = 300 * time.Millisecond
	}
	buf := make([]byte, ResponseLen+1)
	for range tries {
		if err := ctx.Err(); err != nil {
			return Message{}, false, err
		}
		if _, err := c.WriteTo(req.Append(nil), net.UDPAddrFromAddrPort(to)); err != nil {
			return Message{}, false, err
		}
		end := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && d.Before(end) {
			end = d
		}
		_ = c.SetReadDeadline(end)
		for {
			n, src, err := c.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return Message{}, false, err
			}
			m, err := Parse(buf[:n])
			if err != nil || m.Type != Response || m.ID != req.ID {
				continue
			}
			ua, _ := src.(*net.UDPAddr)
			if ua == nil {
				return m, false, fmt.Errorf("an answer from %v", src)
			}
			ap := ua.AddrPort()
			got := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if got != from || m.Flags != f {
				return m, false, fmt.Errorf("asked %v for an answer from %v (flags %d), got one from %v (flags %d)", to, from, f, got, m.Flags)
			}
			return m, true, nil
		}
	}
	return Message{}, false, nil
}
