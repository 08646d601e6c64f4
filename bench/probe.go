package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// The size probe finds the largest IPv6 packet a path carries in each
// direction separately. ICMPv6 echo cannot: its reply has the request's
// size, so it measures the smaller direction only. A probe is one UDP
// datagram lan → srv6; srv6 answers either with a small datagram
// (direction up: "I got your packet of this size") or with a datagram
// making an IP packet of the size asked for (direction down). Both ends
// send with IPV6_PMTUDISC_PROBE: no fragmentation, and a path MTU learnt
// from an earlier "packet too big" does not stop the next, larger probe
// from really being sent.

const (
	probeMagic  = "UMSP"
	probeHeader = 12     // magic, op, reserved, size, id
	ip6UDP      = 40 + 8 // IPv6 and UDP headers around a probe
	minProbe    = ip6UDP + probeHeader
	maxProbe    = 65535
)

// probeOp is what srv6 does with a probe.
type probeOp byte

const (
	probeUp   probeOp = 1 // answer small, saying how big the probe was
	probeDown probeOp = 2 // answer with an IP packet of Size bytes
)

// probe is one size-probe message: the request, or the small answer to
// an up probe (Size is then the IP size received).
type probe struct {
	Op   probeOp
	Size uint16 // IP packet size: asked for (down) or received (up answer)
	ID   uint32 // matches answers to probes
}

var (
	errProbeShort = errors.New("size probe: shorter than its header")
	errProbeMagic = errors.New("size probe: bad magic")
	errProbeOp    = errors.New("size probe: unknown op")
	errProbeSize  = errors.New("size probe: size out of range")
)

// parseProbe reads a probe from the start of b; the rest is padding.
func parseProbe(b []byte) (probe, error) {
	if len(b) < probeHeader {
		return probe{}, errProbeShort
	}
	if string(b[:4]) != probeMagic {
		return probe{}, errProbeMagic
	}
	p := probe{Op: probeOp(b[4]), Size: binary.BigEndian.Uint16(b[6:8]), ID: binary.BigEndian.Uint32(b[8:12])}
	if p.Op != probeUp && p.Op != probeDown {
		return probe{}, errProbeOp
	}
	if p.Size < minProbe {
		return probe{}, errProbeSize
	}
	return p, nil
}

// appendProbe appends p's header and pads it to an IP packet of ipSize
// bytes (never less than the header).
func appendProbe(b []byte, p probe, ipSize int) []byte {
	start := len(b)
	b = append(b, probeMagic...)
	b = append(b, byte(p.Op), 0)
	b = binary.BigEndian.AppendUint16(b, p.Size)
	b = binary.BigEndian.AppendUint32(b, p.ID)
	if pad := ipSize - ip6UDP - (len(b) - start); pad > 0 {
		b = append(b, bytes.Repeat([]byte{'.'}, pad)...)
	}
	return b
}

// noFragments makes a UDP socket send every datagram whole, at whatever
// size, up to the interface MTU (IPV6_PMTUDISC_PROBE).
func noFragments(c net.PacketConn) error {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("size probe: %T is not a UDP socket", c)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE)
	})
	return errors.Join(err, serr)
}

// serveProbes answers probes on c until it is closed. Malformed
// datagrams are counted by reason and otherwise ignored.
func serveProbes(c net.PacketConn, refused *reasons) {
	buf := make([]byte, maxProbe)
	out := make([]byte, 0, maxProbe)
	for {
		n, from, err := c.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // an ICMP error about an earlier answer
		}
		p, err := parseProbe(buf[:n])
		if err != nil {
			refused.add(err.Error())
			continue
		}
		switch p.Op {
		case probeUp:
			out = appendProbe(out[:0], probe{Op: probeUp, Size: uint16(n + ip6UDP), ID: p.ID}, 0)
		case probeDown:
			out = appendProbe(out[:0], p, int(p.Size))
		}
		_, _ = c.WriteTo(out, from)
	}
}

// probeOnce sends one probe of op for an IP packet of size bytes and
// reports whether its answer came back within wait, tries times.
func probeOnce(c net.PacketConn, to netip.AddrPort, op probeOp, size int, id uint32, tries int, wait time.Duration) (bool, error) {
	var req []byte
	switch op {
	case probeUp:
		req = appendProbe(nil, probe{Op: op, Size: uint16(size), ID: id}, size)
	case probeDown:
		req = appendProbe(nil, probe{Op: op, Size: uint16(size), ID: id}, 0)
	}
	buf := make([]byte, maxProbe)
	dst := net.UDPAddrFromAddrPort(to)
	for range tries {
		if _, err := c.WriteTo(req, dst); err != nil {
			return false, fmt.Errorf("size probe of %d bytes: %w", size, err)
		}
		deadline := time.Now().Add(wait)
		for {
			_ = c.SetReadDeadline(deadline)
			n, _, err := c.ReadFrom(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				continue // an ICMP error (too big): the probe is lost
			}
			p, err := parseProbe(buf[:n])
			if err != nil || p.ID != id {
				continue // an answer to an earlier try
			}
			if op == probeUp {
				return int(p.Size) == size, nil
			}
			return n+ip6UDP == size, nil
		}
	}
	return false, nil
}

// largest finds the largest IP packet size in [lo, hi] for which pass
// holds, assuming it holds for every size below that one. It fails when
// not even lo passes.
func largest(lo, hi int, pass func(size int) (bool, error)) (int, error) {
	if ok, err := pass(hi); err != nil || ok {
		return hi, err
	}
	ok, err := pass(lo)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("not even a %d-byte packet passes", lo)
	}
	for hi-lo > 1 { // lo passes, hi does not
		mid := (lo + hi) / 2
		ok, err := pass(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}
