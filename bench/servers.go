package bench

import (
	"errors"
	"io"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/lab"
)

// Ports of the servers on srv6 (echo is lab.EchoPort).
const (
	probePort   = 9000 // UDP size probes
	connectPort = 9001 // TCP: accept and close
	sinkPort    = 9002 // TCP: read to the end, report bytes and time
	// sourcePort (source.go): TCP, write a stream of the length asked for
)

// servers are what the measurements talk to on srv6.
type servers struct {
	echo    *lab.EchoServer
	probes  net.PacketConn
	accept  net.Listener
	sink    net.Listener
	source  net.Listener
	streams chan stream // one per connection the sink read to its end
	refused reasons     // malformed size probes, by reason
	wg      sync.WaitGroup
}

// stream is what the sink saw of one connection.
type stream struct {
	bytes       int64
	first, last time.Time
	err         error
}

func startServers(n *lab.NS) (*servers, error) {
	s := &servers{streams: make(chan stream, 4)}
	var err error
	any6 := netip.IPv6Unspecified()
	if s.echo, err = n.StartEcho(netip.AddrPortFrom(any6, lab.EchoPort)); err != nil {
		return nil, err
	}
	if s.probes, err = n.ListenPacket("udp6", netip.AddrPortFrom(any6, probePort).String()); err != nil {
		return nil, errors.Join(err, s.close())
	}
	if err := noFragments(s.probes); err != nil {
		return nil, errors.Join(err, s.close())
	}
	if s.accept, err = n.Listen("tcp6", netip.AddrPortFrom(any6, connectPort).String()); err != nil {
		return nil, errors.Join(err, s.close())
	}
	if s.sink, err = n.Listen("tcp6", netip.AddrPortFrom(any6, sinkPort).String()); err != nil {
		return nil, errors.Join(err, s.close())
	}
	if s.source, err = n.Listen("tcp6", netip.AddrPortFrom(any6, sourcePort).String()); err != nil {
		return nil, errors.Join(err, s.close())
	}
	s.wg.Add(4)
	go func() { defer s.wg.Done(); serveProbes(s.probes, &s.refused) }()
	go func() { defer s.wg.Done(); s.serveAccept() }()
	go func() { defer s.wg.Done(); s.serveSink() }()
	go func() { defer s.wg.Done(); serveSource(s.source, &s.refused) }()
	return s, nil
}

func (s *servers) serveAccept() {
	for {
		c, err := s.accept.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// serveSink reads each connection to its end, one at a time: goodput
// runs one stream.
func (s *servers) serveSink() {
	buf := make([]byte, 256<<10)
	for {
		c, err := s.sink.Accept()
		if err != nil {
			return
		}
		var st stream
		for {
			n, err := c.Read(buf)
			if n > 0 {
				now := time.Now()
				if st.bytes == 0 {
					st.first = now
				}
				st.bytes += int64(n)
				st.last = now
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					st.err = err
				}
				break
			}
		}
		c.Close()
		select {
		case s.streams <- st:
		default: // nobody waits for it: a stream from an aborted run
		}
	}
}

func (s *servers) close() error {
	var cs []io.Closer
	if s.echo != nil {
		cs = append(cs, s.echo)
	}
	for _, c := range []io.Closer{s.probes, s.accept, s.sink, s.source} {
		if c != nil { // interfaces left nil by a failed start
			cs = append(cs, c)
		}
	}
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// reasons counts refusals by name.
type reasons struct {
	mu sync.Mutex
	m  map[string]int
}

func (r *reasons) add(reason string) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]int{}
	}
	r.m[reason]++
	r.mu.Unlock()
}

func (r *reasons) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.m)
}
