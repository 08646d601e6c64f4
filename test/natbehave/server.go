package natbehave

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// Listen opens a UDP socket at an address ("udp4", "198.51.100.10:3478"):
// net.ListenPacket, or a lab namespace's ListenPacket.
type Listen func(network, addr string) (net.PacketConn, error)

// Server answers binding requests on its four sockets: each address with
// each port. It answers a request from the socket its flags ask for, with
// the request's source as it saw it; anything that is not a request is
// dropped and counted by reason (Counts).
type Server struct {
	addrs [2]netip.Addr
	ports [2]uint16
	conns [2][2]net.PacketConn // [address][port]
	wg    sync.WaitGroup

	mu     sync.Mutex
	counts map[string]uint64
}

// NewServer opens the server's sockets on a1 and a2 (two addresses of one
// family) with ports p1 and p2, and serves until Close.
func NewServer(listen Listen, a1, a2 netip.Addr, p1, p2 uint16) (*Server, error) {
	if a1 == a2 || p1 == p2 || a1.Is4() != a2.Is4() || !a1.IsValid() || !a2.IsValid() || p1 == 0 || p2 == 0 {
		return nil, fmt.Errorf("natbehave: a server needs two addresses of one family and two ports, got %v %v %d %d", a1, a2, p1, p2)
	}
	s := &Server{addrs: [2]netip.Addr{a1, a2}, ports: [2]uint16{p1, p2}, counts: map[string]uint64{}}
	network := "udp6"
	if a1.Is4() {
		network = "udp4"
	}
	for i, a := range s.addrs {
		for j, p := range s.ports {
			c, err := listen(network, netip.AddrPortFrom(a, p).String())
			if err != nil {
				return nil, errors.Join(err, s.Close())
			}
			s.conns[i][j] = c
		}
	}
	for i := range 2 {
		for j := range 2 {
			s.wg.Add(1)
			go s.serve(i, j)
		}
	}
	return s, nil
}

// Primary is the server's first address and first port: where a client
// starts (it learns the others from the answer).
func (s *Server) Primary() netip.AddrPort { return netip.AddrPortFrom(s.addrs[0], s.ports[0]) }

// Close closes the sockets and waits for the server to stop.
func (s *Server) Close() error {
	var errs []error
	for i := range 2 {
		for j := range 2 {
			if c := s.conns[i][j]; c != nil {
				errs = append(errs, c.Close())
			}
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Counts are the server's counters: "requests" and "answers", and each
// drop by reason ("drop-short", "drop-magic", "drop-type", "drop-flags",
// "drop-length", "drop-addr", "drop-write").
func (s *Server) Counts() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

func (s *Server) count(what string) {
	s.mu.Lock()
	s.counts[what]++
	s.mu.Unlock()
}

// serve answers the requests that reach socket [i][j] until it closes.
func (s *Server) serve(i, j int) {
	defer s.wg.Done()
	// One byte more than any message: a longer datagram is cut there and
	// refused by its length, never read in part as a valid one.
	buf := make([]byte, ResponseLen+1)
	for {
		n, from, err := s.conns[i][j].ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a socket error (an ICMP error reported on it): read on
		}
		m, err := Parse(buf[:n])
		if err == nil && m.Type != Request {
			err = ErrType
		}
		if err != nil {
			s.count("drop-" + reason(err))
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			s.count("drop-addr")
			continue
		}
		s.count("requests")
		src := ua.AddrPort()
		ri, rj := i, j
		if m.Flags&FlagChangeAddr != 0 {
			ri ^= 1
		}
		if m.Flags&FlagChangePort != 0 {
			rj ^= 1
		}
		resp := Message{Type: Response, Flags: m.Flags, ID: m.ID,
			Mapped: netip.AddrPortFrom(src.Addr().Unmap(), src.Port()),
			Other:  netip.AddrPortFrom(s.addrs[i^1], s.ports[j^1])}
		if _, err := s.conns[ri][rj].WriteTo(resp.Append(nil), from); err != nil {
			s.count("drop-write")
			continue
		}
		s.count("answers")
	}
}
