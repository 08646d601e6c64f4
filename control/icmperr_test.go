package control

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/unmap-dev/unmap/proto"
)

// icmpEdge is a fake edge that takes ICMPError messages.
type icmpEdge struct {
	*fakeEdge
	errs chan *proto.ICMPError
}

func (e *icmpEdge) ICMPError(m *proto.ICMPError) { e.errs <- m }

// timeExceeded is a minimal ICMPv6 time exceeded as the relay relays it.
func timeExceeded() []byte {
	p := make([]byte, 40+8+48)
	p[0], p[6], p[7] = 0x60, 58, 64
	binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
	p[40] = 3
	p[48], p[54] = 0x60, 17
	return p
}

func TestICMPErrorReachesTheEdge(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	edge := &icmpEdge{fakeEdge: newFakeEdge(), errs: make(chan *proto.ICMPError, 4)}
	c := startEdge(t, p, "home-1", srv.Addr(), edge)
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	pkt := timeExceeded()
	if err := ss.ICMPError(pkt); err != nil {
		t.Fatal(err)
	}
	got := recvWithin(t, edge.errs, "icmp error")
	if !bytes.Equal(got.Packet, pkt) {
		t.Errorf("packet %x, sent %x", got.Packet, pkt)
	}
	waitCounter(t, c.Counters(), "icmp_errors_received", 1)
	if n := srv.Counters().Get("icmp_errors_sent"); n != 1 {
		t.Errorf("icmp_errors_sent = %d", n)
	}
}

// An edge whose handler does not take ICMP errors counts and drops them;
// the session goes on.
func TestICMPErrorWithoutHandler(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	edge := newFakeEdge()
	c := startEdge(t, p, "home-1", srv.Addr(), edge)
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	if err := ss.ICMPError(timeExceeded()); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, c.Counters(), "icmp_errors_unhandled", 1)
	fl := testFlow("home-1", 1)
	if err := ss.CloseFlow(fl, proto.CodeExpired); err != nil {
		t.Fatal(err)
	}
	if cl := recvWithin(t, edge.closed, "flow close"); cl.Flow != fl {
		t.Errorf("close = %+v", cl)
	}
}
