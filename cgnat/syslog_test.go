package cgnat

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
)

var testRecord = Record{Time: time.Date(2026, 12, 3, 5, 0, 0, 250_000_000, time.UTC), Event: EventGrant,
	Subscriber: netip.MustParseAddr("100.64.0.5"), Address: netip.MustParseAddr("203.0.113.64"),
	PortFirst: 40960, PortLast: 41471, Protocol: BlockProtocols}

// TestSyslogFormat: a record is one RFC 5424 message, byte for byte:
// PRI local0.info, version 1, the record's time in UTC, host, app, pid,
// MSGID by event, the record's fields as structured data, its JSON line
// as the message.
func TestSyslogFormat(t *testing.T) {
	l := &SyslogLog{to: SyslogTo{Network: "udp", Facility: 16}, hostname: "relay1", procid: "42"}
	b, err := l.Format(testRecord)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(testRecord)
	want := `<134>1 2026-12-03T05:00:00.25Z relay1 unmap 42 cgnat-grant [cgnat@32473 address="203.0.113.64" event="grant" port_first="40960" port_last="41471" protocol="tcp,udp,icmp" subscriber="100.64.0.5"] ` + string(js)
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

// checkMessage parses msg with the library's RFC 5424 parser and checks
// it carries r: structured data and message.
func checkMessage(t *testing.T, msg []byte, r Record) {
	t.Helper()
	m, err := rfc5424.NewParser().Parse(msg)
	if err != nil {
		t.Fatalf("%q: %v", msg, err)
	}
	sm := m.(*rfc5424.SyslogMessage)
	if sm.StructuredData == nil {
		t.Fatalf("%q: no structured data", msg)
	}
	sd := (*sm.StructuredData)[SyslogSDID]
	want := map[string]string{"event": r.Event, "subscriber": r.Subscriber.String(), "address": r.Address.String(),
		"port_first": strconv.Itoa(int(r.PortFirst)), "port_last": strconv.Itoa(int(r.PortLast)), "protocol": r.Protocol}
	for k, v := range want {
		if sd[k] != v {
			t.Errorf("%q: %s=%q, want %q", msg, k, sd[k], v)
		}
	}
	var got Record
	if sm.Message == nil || json.Unmarshal([]byte(*sm.Message), &got) != nil || got.Subscriber != r.Subscriber || got.PortFirst != r.PortFirst {
		t.Errorf("%q: message is not the record's JSON", msg)
	}
	if sm.Timestamp == nil || !sm.Timestamp.Equal(r.Time) {
		t.Errorf("%q: timestamp %v, want %v", msg, sm.Timestamp, r.Time)
	}
}

// receiver is a syslog receiver of the test: it hands each message
// over on msgs until stopped.
type receiver struct {
	dest string
	msgs chan []byte
	stop func()
}

// listen starts a receiver of network ("udp", "tcp", "unixgram") at
// addr ("" for a fresh one).
func listen(t *testing.T, network, addr string) *receiver {
	t.Helper()
	r := &receiver{msgs: make(chan []byte, 16)}
	if addr == "" {
		addr = "127.0.0.1:0"
		if network == "unixgram" {
			addr = filepath.Join(t.TempDir(), "log.sock")
		}
	}
	if network == "tcp" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r.dest = "syslog+tcp://" + ln.Addr().String()
		var mu sync.Mutex
		var conns []net.Conn
		r.stop = func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go readFrames(c, r.msgs)
			}
		}()
	} else {
		os.Remove(addr) // a unix socket's file outlives its closed listener
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		r.stop = func() { pc.Close() }
		r.dest = "syslog+udp://" + pc.LocalAddr().String()
		if network == "unixgram" {
			r.dest = "syslog+unix://" + addr
		}
		go func() {
			buf := make([]byte, 4096)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				r.msgs <- append([]byte(nil), buf[:n]...)
			}
		}()
	}
	t.Cleanup(r.stop)
	return r
}

// readFrames reads RFC 6587 octet-counted frames ("LEN SP MSG").
func readFrames(c net.Conn, msgs chan<- []byte) {
	br := bufio.NewReader(c)
	for {
		ls, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(ls))
		if err != nil || n < 1 || n > 4096 {
			msgs <- []byte("bad frame length " + ls)
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		msgs <- msg
	}
}

func (r *receiver) next(t *testing.T) []byte {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no syslog message within 5 s")
		return nil
	}
}

// granted is the grant record of sub's block i at the test's time.
func granted(a *Agent, dp *fakeDP, sub netip.Addr, i int) Record {
	addr, first := a.s.Datapath.BlockAt(dp.subs[sub].Blocks[i])
	return Record{Time: testRecord.Time, Event: EventGrant, Subscriber: sub, Address: addr,
		PortFirst: first, PortLast: first + uint16(a.s.Datapath.BlockSize()-1), Protocol: BlockProtocols}
}

// syslogAgent is an agent on the fake datapath logging to dest.
func syslogAgent(t *testing.T, dest string) (*Agent, *fakeDP, *clock) {
	t.Helper()
	s := testSettings(t, false)
	s.Log = dest
	blog, err := OpenRecordLog(dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blog.Close() })
	clk := &clock{testRecord.Time}
	dp := newFake(&s.Datapath)
	a, err := NewAgent(s, dp, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return a, dp, clk
}

// TestSyslogReceivers: with cgnat.log a syslog address, each block grant
// reaches a receiver over UDP, TCP (octet-counted frames) and a unix
// datagram socket (/dev/log's kind) as an RFC 5424 message that the
// library's parser reads back into the record's fields, before the
// datapath has the block; the log counters say so.
func TestSyslogReceivers(t *testing.T) {
	for _, network := range []string{"udp", "tcp", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			rcv := listen(t, network, "")
			a, dp, _ := syslogAgent(t, rcv.dest)
			for _, sub := range []netip.Addr{subA, subB} {
				if err := a.NoBlock(sub); err != nil {
					t.Fatal(err)
				}
				if g := dp.subs[sub]; g == nil || len(g.Blocks) != 1 {
					t.Fatalf("%v: no block granted", sub)
				}
				checkMessage(t, rcv.next(t), granted(a, dp, sub, 0))
			}
			if a.M.Get(mLogWritten) != 2 || a.M.Get(mLogFailed) != 0 || a.M.Get(mGranted) != 2 {
				t.Errorf("counters %v", a.M.Snapshot())
			}
		})
	}
}

// TestSyslogReceiverDown: what happens to grants while the receiver is
// down (OPERATING.md, "The relay's CGNAT"). A unix socket or TCP
// receiver that is gone fails the grant at once: no block reaches the
// datapath, the failure is counted, and the next grant after the
// receiver is back goes through (a new connection). Over UDP only the
// kernel's report of the unreachable port shows it, on the send after
// the lost one: that grant fails and is counted; the one before was
// made and its record lost (UDP's weaker guarantee).
func TestSyslogReceiverDown(t *testing.T) {
	for _, network := range []string{"tcp", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			rcv := listen(t, network, "")
			a, dp, _ := syslogAgent(t, rcv.dest)
			if err := a.NoBlock(subA); err != nil {
				t.Fatal(err)
			}
			rcv.next(t)
			rcv.stop()
			time.Sleep(50 * time.Millisecond) // the receiver's close reaches the relay's socket
			if err := a.NoBlock(subB); err == nil {
				t.Fatal("a grant with the receiver down")
			}
			if g := dp.subs[subB]; g != nil && len(g.Blocks) != 0 {
				t.Errorf("a block reached the datapath unlogged: %v", g.Blocks)
			}
			if a.M.Get(mLogFailed) != 1 || a.M.Get(mGranted) != 1 {
				t.Errorf("the failure is not counted: %v", a.M.Snapshot())
			}
			back := listen(t, network, strings.SplitN(rcv.dest, "://", 2)[1])
			if err := a.NoBlock(subB); err != nil {
				t.Fatalf("receiver back: %v", err)
			}
			checkMessage(t, back.next(t), granted(a, dp, subB, 0))
		})
	}
	t.Run("udp", func(t *testing.T) {
		rcv := listen(t, "udp", "")
		a, dp, _ := syslogAgent(t, rcv.dest)
		rcv.stop()
		if err := a.NoBlock(subA); err != nil {
			t.Fatalf("the first grant after the receiver went: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the ICMP port unreachable comes back
		err := a.NoBlock(subB)
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Fatalf("the grant after the kernel's report: %v", err)
		}
		if g := dp.subs[subB]; (g != nil && len(g.Blocks) != 0) || a.M.Get(mLogFailed) != 1 || a.M.Get(mLogWritten) != 1 {
			t.Errorf("after a failed send: %v", a.M.Snapshot())
		}
	})
}

// TestLookupSyslog: `unmap relay lookup --log` over a collector's file
// (the messages as received, other programs' lines between them) finds
// who held a port, as over the JSON-lines file.
func TestLookupSyslog(t *testing.T) {
	l := &SyslogLog{to: SyslogTo{Network: "udp", Facility: 16}, hostname: "relay1", procid: "42"}
	rel := testRecord
	rel.Event, rel.Time = EventRelease, testRecord.Time.Add(time.Hour)
	var file strings.Builder
	for _, r := range []Record{testRecord, rel} {
		b, err := l.Format(r)
		if err != nil {
			t.Fatal(err)
		}
		file.WriteString("<30>1 2026-12-03T05:00:00Z relay1 sshd 7 - - session opened\n")
		file.Write(b)
		file.WriteString("\n")
	}
	port := testRecord.PortFirst + 3
	ans, ok, err := LookupSyslog(strings.NewReader(file.String()), testRecord.Address, port, testRecord.Time.Add(time.Minute))
	if err != nil || !ok || ans.Subscriber != testRecord.Subscriber || !ans.Until.Equal(rel.Time) {
		t.Errorf("during the grant: %+v %v %v", ans, ok, err)
	}
	if _, ok, err := LookupSyslog(strings.NewReader(file.String()), testRecord.Address, port, rel.Time.Add(time.Minute)); ok || err != nil {
		t.Errorf("after the release: held %v, %v", ok, err)
	}
}
