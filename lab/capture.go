package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// CaptureOptions bound a capture: it ends after Max matching packets or
// after Timeout, whichever comes first.
type CaptureOptions struct {
	// Max is how many matching packets to keep; zero means 100.
	Max int
	// Timeout ends the capture; zero means 5 s.
	Timeout time.Duration
	// Match selects the packets to keep (and count); nil keeps all.
	Match func(Captured) bool
}

// Captured is one frame seen on the interface.
type Captured struct {
	Packet   gopacket.Packet // decoded from the Ethernet header up
	Outgoing bool            // sent by this namespace, not received
	Time     time.Time
}

// Capture is a running capture on one interface of a namespace.
type Capture struct {
	f    *os.File
	opts CaptureOptions
	done chan struct{}
	// stopped is set by Stop before it closes the file, so that the
	// reader's "use of closed file" (which the raw conn does not map to
	// os.ErrClosed) reads as a normal end.
	stopped atomic.Bool

	mu   sync.Mutex
	pkts []Captured
	err  error
}

// snapLen holds any frame a lab veth hands over, a 64 KiB GSO frame with
// its headers included (BIG TCP, which allows more, is off on them).
const snapLen = 1<<16 + 1024

// Capture starts capturing on the interface ifname of the namespace and
// returns at once: frames sent after Capture returns are seen. It uses an
// AF_PACKET socket bound to the interface, so it needs no tcpdump.
func (n *NS) Capture(ifname string, opts CaptureOptions) (*Capture, error) {
	if opts.Max <= 0 {
		opts.Max = 100
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	link, err := n.nl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: capture %s: %w", n.Name, ifname, err)
	}
	var fd int
	err = n.Do(func() error {
		// Protocol 0 receives nothing until bind, so no frame of another
		// interface slips in between socket and bind.
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: capture %s: %w", n.Name, ifname, err)
	}
	c := &Capture{f: os.NewFile(uintptr(fd), n.Name+"/"+ifname), opts: opts, done: make(chan struct{})}
	go c.run()
	n.track(func() error { c.Stop(); return nil })
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) run() {
	defer close(c.done)
	defer c.f.Close()
	rc, err := c.f.SyscallConn()
	if err != nil {
		c.finish(err)
		return
	}
	// The deadline needs the fd in the runtime poller (it is
	// non-blocking, so os.NewFile put it there): without it the capture
	// could block forever.
	if err := c.f.SetReadDeadline(time.Now().Add(c.opts.Timeout)); err != nil {
		c.finish(err)
		return
	}
	buf := make([]byte, snapLen)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			c.finish(err)
			return
		}
		if rerr != nil {
			c.finish(rerr)
			return
		}
		p := Captured{
			Packet: gopacket.NewPacket(append([]byte(nil), buf[:n]...), layers.LayerTypeEthernet, gopacket.Default),
			Time:   time.Now(),
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			p.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		if c.opts.Match != nil && !c.opts.Match(p) {
			continue
		}
		c.mu.Lock()
		c.pkts = append(c.pkts, p)
		full := len(c.pkts) >= c.opts.Max
		c.mu.Unlock()
		if full {
			c.finish(nil)
			return
		}
	}
}

// finish records how the capture ended. The deadline or Stop (even one
// that comes before the reader starts) end it normally.
func (c *Capture) finish(err error) {
	if c.stopped.Load() || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Wait blocks until the capture ends (Max packets, Timeout or Stop) and
// returns what it kept. Reaching the timeout is not an error: the caller
// asserts on what was, or was not, seen.
func (c *Capture) Wait() ([]Captured, error) {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Captured(nil), c.pkts...), c.err
}

// Stop ends the capture now; Wait then returns what was kept so far.
func (c *Capture) Stop() {
	// Closing the file wakes the reader; the reader closes it again
	// harmlessly on its way out.
	c.stopped.Store(true)
	_ = c.f.Close()
	<-c.done
}
