package cgnat

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

// unixReceiver is a syslog daemon's /dev/log for the test: a unix
// datagram socket whose messages are kept, and appended to a file as a
// collector would write them.
type unixReceiver struct {
	path, file string
	mu         sync.Mutex
	msgs       []string
	pc         net.PacketConn
}

func (r *unixReceiver) start(t *testing.T) {
	t.Helper()
	os.Remove(r.path) // a closed socket's file stays
	pc, err := net.ListenPacket("unixgram", r.path)
	if err != nil {
		t.Fatal(err)
	}
	r.pc = pc
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, string(buf[:n]))
			f, err := os.OpenFile(r.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err == nil {
				f.Write(append(buf[:n:n], '\n'))
				f.Close()
			}
			r.mu.Unlock()
		}
	}()
}

// wait returns the messages once there are n, or what there is after 5 s:
// the relay's send returns once the socket has the datagram, before this
// receiver's goroutine has read it.
func (r *unixReceiver) wait(n int) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		msgs := r.got()
		if len(msgs) >= n || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *unixReceiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// TestBlockLogToSyslog: a relay whose cgnat.log is syslog+unix:// (a
// receiver in the test, as /dev/log) sends each grant as an RFC 5424
// message before the subscriber's packet goes on: the message parses,
// names the subscriber and the block srv4 saw the flow from, and
// `unmap relay lookup --log` over the file the receiver wrote names the
// subscriber. With the receiver gone, a new subscriber's flow gets no
// block (nothing granted unlogged) and the failure is counted; once the
// receiver is back, the next try goes through.
func TestBlockLogToSyslog(t *testing.T) {
	l := labtest.New(t, lab.Options{CGNMode: lab.CGNPreserve, CGNUDPTimeout: 30 * time.Second})
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	dir := t.TempDir()
	rcv := &unixReceiver{path: filepath.Join(dir, "log.sock"), file: filepath.Join(dir, "collected.log")}
	rcv.start(t)
	cfg, err := os.ReadFile(d.RelayConfig)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(cfg), "log: "+d.CGNATLog, "log: syslog+unix://"+rcv.path+"?facility=local3", 1)
	if text == string(cfg) {
		t.Fatal("relay.yaml has no cgnat.log line to change")
	}
	if err := os.WriteFile(d.RelayConfig, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d.StartRelay(t, l)
	d.DumpOnFailure(t)
	e2e.Section(t, d.RelaySock, "cgnat", "the relay's cgnat", func(map[string]uint64) bool { return true })

	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort)
	sub := l.NS(lab.Sub)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sub.EchoUDP(ctx, to, "syslog-first"); err != nil {
		t.Fatalf("sub → srv4: %v", err)
	}
	p, ok := srv.PeerOf("syslog-first")
	if !ok {
		t.Fatal("srv4 never saw the flow")
	}
	msgs := rcv.wait(1)
	if len(msgs) != 1 {
		t.Fatalf("the receiver got %d messages, want the grant's: %q", len(msgs), msgs)
	}
	m, err := rfc5424.NewParser().Parse([]byte(msgs[0]))
	if err != nil {
		t.Fatalf("%q: %v", msgs[0], err)
	}
	sm := m.(*rfc5424.SyslogMessage)
	var sd map[string]string
	if sm.StructuredData != nil {
		sd = (*sm.StructuredData)["cgnat@32473"]
	}
	if *sm.Facility != 19 || *sm.Appname != "unmap" || *sm.MsgID != "cgnat-grant" || sd["event"] != "grant" ||
		sd["subscriber"] != lab.SubAddr.String() || sd["address"] != p.Remote.Addr().String() {
		t.Errorf("%q: not the grant to %v of %v's block", msgs[0], lab.SubAddr, p.Remote)
	}
	out, err := l.NS(lab.Relay).Output(ctx, d.Bin, "relay", "lookup", "-c", d.RelayConfig, "--log", rcv.file, p.Remote.String())
	if err != nil || !strings.Contains(string(out), lab.SubAddr.String()) {
		t.Errorf("unmap relay lookup --log %v: %v\n%s", p.Remote, err, out)
	}

	// The receiver gone: a new subscriber gets no block.
	rcv.pc.Close()
	second := netip.MustParseAddr("100.64.100.3")
	if err := sub.AddAddr(string(lab.Relay), netip.PrefixFrom(second, lab.SubNet.Bits())); err != nil {
		t.Fatal(err)
	}
	var c *net.UDPConn
	if err := sub.Do(func() (err error) {
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: second.AsSlice()}, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := e2e.EchoUDP(c, "syslog-down", time.Second); err == nil {
		t.Error("a flow went through with the block log's receiver down")
	}
	e2e.Section(t, d.RelaySock, "cgnat", "the failed log record counted, no block granted", func(m map[string]uint64) bool {
		return m["log-failed"] >= 1 && m["grants"] == 1
	})
	rcv.start(t)
	if err := e2e.Retry(10*time.Second, func() error { return e2e.EchoUDP(c, "syslog-back", time.Second) }); err != nil {
		t.Fatalf("the receiver back: %v", err)
	}
	if msgs := rcv.wait(2); len(msgs) != 2 || !strings.Contains(msgs[1], `subscriber="`+second.String()+`"`) {
		t.Errorf("after the receiver came back: %q", msgs)
	}
}
