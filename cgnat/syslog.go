package cgnat

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"golang.org/x/sys/unix"
)

// RecordLog is where the agent writes its block records before the
// datapath has a block: the JSON-lines file (BlockLog) or syslog
// (SyslogLog). Write returns only once the record is as safe as the
// sink can make it; an error means the grant is not made.
type RecordLog interface {
	Write(Record) error
	Reopen() error // SIGHUP: the file after rotation, a new syslog connection
	Close() error
}

// OpenRecordLog opens what cgnat.log names: a syslog URL (ParseSyslog)
// or the path of a JSON-lines file.
func OpenRecordLog(dest string) (RecordLog, error) {
	if IsSyslog(dest) {
		to, err := ParseSyslog(dest)
		if err != nil {
			return nil, err
		}
		return OpenSyslog(to)
	}
	return OpenLog(dest)
}

// IsSyslog reports whether cgnat.log names syslog rather than a file.
func IsSyslog(dest string) bool { return strings.HasPrefix(dest, "syslog") }

// SyslogTo is where SyslogLog sends: a network ("udp", "tcp" or
// "unixgram") and address, and the facility the records carry.
type SyslogTo struct {
	Network, Addr string
	Facility      uint8
}

// facilities are the RFC 5424 facility codes an operator may pick.
var facilities = map[string]uint8{"daemon": 3, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23}

// ParseSyslog reads cgnat.log's syslog form: syslog+udp://HOST:PORT,
// syslog+tcp://HOST:PORT (port default 514 for both) or
// syslog+unix:///dev/log (a datagram socket: the local daemon's), each
// with an optional ?facility=local0 (default; daemon or local0-7).
func ParseSyslog(s string) (SyslogTo, error) {
	u, err := url.Parse(s)
	if err != nil {
		return SyslogTo{}, fmt.Errorf("%q: %w", s, err)
	}
	to := SyslogTo{Facility: facilities["local0"]}
	switch u.Scheme {
	case "syslog+udp", "syslog+tcp":
		to.Network = strings.TrimPrefix(u.Scheme, "syslog+")
		if u.Host == "" || u.Path != "" && u.Path != "/" {
			return SyslogTo{}, fmt.Errorf("%q: want %s://HOST:PORT", s, u.Scheme)
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return SyslogTo{}, fmt.Errorf("%q: want %s://HOST:PORT", s, u.Scheme)
		}
		if port == "" {
			port = "514"
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return SyslogTo{}, fmt.Errorf("%q: port %q", s, port)
		}
		to.Addr = net.JoinHostPort(host, port)
	case "syslog+unix":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return SyslogTo{}, fmt.Errorf("%q: want syslog+unix:///PATH (three slashes: an absolute path)", s)
		}
		to.Network, to.Addr = "unixgram", u.Path
	default:
		return SyslogTo{}, fmt.Errorf("%q: want syslog+udp://HOST:PORT, syslog+tcp://HOST:PORT or syslog+unix:///dev/log", s)
	}
	for k, v := range u.Query() {
		if k != "facility" || len(v) != 1 {
			return SyslogTo{}, fmt.Errorf("%q: unknown parameter %q (only facility)", s, k)
		}
		f, ok := facilities[v[0]]
		if !ok {
			return SyslogTo{}, fmt.Errorf("%q: facility %q: want daemon or local0 to local7", s, v[0])
		}
		to.Facility = f
	}
	return to, nil
}

// SyslogSDID is the structured data element of a record. The project
// has no IANA private enterprise number of its own: 32473 is the one RFC
// 5612 reserves for documentation, until one is assigned.
const SyslogSDID = "cgnat@32473"

// severityInfo is RFC 5424's informational severity: a record is routine.
const severityInfo = 6

// SyslogLog sends each record as an RFC 5424 message (formatted by
// leodido/go-syslog's builder): the structured data element SyslogSDID
// holds the record's fields, and the message is the record's JSON line
// (the one the file mode writes), so a collector's file still answers
// `unmap relay lookup --log`. Over TCP, messages are framed by octet
// counting (RFC 6587). Over TCP or a unix socket, a send that fails is
// tried once more on a new connection; if that fails too (or a UDP send
// fails), Write returns the error and the grant is not made
// (OPERATING.md, "The relay's CGNAT", says what each transport
// guarantees).
type SyslogLog struct {
	to       SyslogTo
	hostname string
	procid   string
	dial     func(network, addr string) (net.Conn, error)

	mu   sync.Mutex
	conn net.Conn
}

// OpenSyslog makes the log of records sent to to. It connects at the
// first Write (or Reopen): a receiver that is down when the relay starts
// fails the grants, not the relay (Service.Start warns).
func OpenSyslog(to SyslogTo) (*SyslogLog, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "-"
	}
	return &SyslogLog{to: to, hostname: host, procid: strconv.Itoa(os.Getpid()),
		dial: func(network, addr string) (net.Conn, error) { return net.DialTimeout(network, addr, 2*time.Second) }}, nil
}

// Format is r as an RFC 5424 message (without TCP's framing).
func (l *SyslogLog) Format(r Record) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	m := &rfc5424.SyslogMessage{}
	m.SetPriority(l.to.Facility*8 + severityInfo)
	m.SetVersion(1)
	m.SetTimestamp(r.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	m.SetHostname(l.hostname)
	m.SetAppname("unmap")
	m.SetProcID(l.procid)
	m.SetMsgID("cgnat-" + r.Event)
	for _, p := range [][2]string{
		{"event", r.Event}, {"subscriber", r.Subscriber.String()}, {"address", r.Address.String()},
		{"port_first", strconv.Itoa(int(r.PortFirst))}, {"port_last", strconv.Itoa(int(r.PortLast))},
		{"protocol", r.Protocol},
	} {
		m.SetParameter(SyslogSDID, p[0], p[1])
	}
	m.SetMessage(string(js))
	s, err := m.String()
	if err != nil {
		return nil, fmt.Errorf("cgnat syslog: %w", err)
	}
	return []byte(s), nil
}

// Write sends r: once, and once more on a new connection if that fails.
func (l *SyslogLog) Write(r Record) error {
	msg, err := l.Format(r)
	if err != nil {
		return err
	}
	if l.to.Network == "tcp" {
		msg = append([]byte(strconv.Itoa(len(msg))+" "), msg...)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil && l.to.Network == "tcp" && !peerOpen(l.conn) {
		err = errors.New("the receiver closed the connection")
		l.conn.Close()
		l.conn = nil
	}
	if l.conn != nil {
		if err = l.send(msg); err == nil {
			return nil
		}
		if l.to.Network == "udp" {
			// The kernel's report (ICMP port unreachable) that an earlier
			// datagram found no receiver: this record fails and is
			// counted; sent again on a new socket it would hide that.
			return fmt.Errorf("cgnat syslog %s %s: %w", l.to.Network, l.to.Addr, err)
		}
	}
	if err2 := l.redial(); err2 != nil {
		return fmt.Errorf("cgnat syslog %s %s: %w", l.to.Network, l.to.Addr, errors.Join(err, err2))
	}
	if err := l.send(msg); err != nil {
		l.conn.Close()
		l.conn = nil
		return fmt.Errorf("cgnat syslog %s %s: %w", l.to.Network, l.to.Addr, err)
	}
	return nil
}

// peerOpen reports whether a TCP receiver still has the connection
// open. A receiver sends nothing, so anything to read is its close (EOF
// or a reset): a write now would land in the send buffer and be lost
// with it, the grant made all the same.
func peerOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = err == unix.EAGAIN // nothing to read: open; else EOF or a reset
		return true               // done, whatever it found: never wait
	})
	return err == nil && open
}

// send writes msg whole, within a bound: a receiver that stops reading
// fails the grant rather than stall the agent.
func (l *SyslogLog) send(msg []byte) error {
	_ = l.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := l.conn.Write(msg)
	return err
}

func (l *SyslogLog) redial() error {
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	c, err := l.dial(l.to.Network, l.to.Addr)
	if err != nil {
		return err
	}
	l.conn = c
	return nil
}

// Reopen connects again (SIGHUP: a daemon restarted elsewhere).
func (l *SyslogLog) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.redial(); err != nil {
		return fmt.Errorf("cgnat syslog %s %s: %w", l.to.Network, l.to.Addr, err)
	}
	return nil
}

// Close closes the connection.
func (l *SyslogLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	err := l.conn.Close()
	l.conn = nil
	return err
}
