package security

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/e2e"
	"golang.org/x/sys/unix"
)

// TestMartianSourcesDropped: the Internet's router (inet) sends the
// relay, as raw frames on its link, UDP datagrams towards the site's LAN
// host and the site's public IPv4 from sources no Internet host has: the
// loopbacks, a link-local and a multicast address, an IPv4-mapped one,
// the site's own prefix, the site's public IPv4 and the relay's own
// address. The relay's datapath drops each under its class's counter
// (exactly as many as were sent), the edge is offered none of them, and
// the LAN host's echo server hears from none; an ordinary datagram from
// srv6 afterwards still reaches it. One CGN mode: the check is the
// relay's, before any carrier.
func TestMartianSourcesDropped(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.LAN))
	type counts map[string]uint64
	datapath := func() counts {
		return e2e.Section(t, u.D.RelaySock, "datapath", "the relay's counters", func(counts) bool { return true })
	}
	a := netip.MustParseAddr
	inSite := lab.SitePrefix.Addr().As16()
	inSite[15] = 0x99
	cases := []struct {
		src, dst netip.Addr
		want     xlat.Reason
	}{
		{a("::1"), u.Host, xlat.ReasonDropMartianLoopback},
		{a("::"), u.Host, xlat.ReasonDropMartianUnspecified},
		{a("fe80::1"), u.Host, xlat.ReasonDropMartianLinkLocal},
		{a("ff0e::1"), u.Host, xlat.ReasonDropMartianMulticast},
		{a("::ffff:127.0.0.1"), u.Host, xlat.ReasonDropMartianMapped},
		{netip.AddrFrom16(inSite), u.Host, xlat.ReasonDropMartianSite},
		{a("127.0.0.1"), lab.SitePublic4, xlat.ReasonDropMartianLoopback},
		{a("0.0.0.0"), lab.SitePublic4, xlat.ReasonDropMartianUnspecified},
		{a("240.0.0.1"), lab.SitePublic4, xlat.ReasonDropMartianReserved},
		{a("169.254.169.254"), lab.SitePublic4, xlat.ReasonDropMartianLinkLocal},
		{lab.SitePublic4, lab.SitePublic4, xlat.ReasonDropMartianSite},
		{lab.RelayAddr, lab.SitePublic4, xlat.ReasonDropMartianOwn},
	}
	const each = 3
	want := map[string]uint64{}
	for _, c := range cases {
		want[c.want.String()] += each
	}
	before := datapath()
	offersBefore := e2e.Section(t, u.D.EdgeS, "inbound", "the edge's inbound counts", func(map[string]uint64) bool { return true })

	send := sendFrames(t, l.NS(lab.Inet), string(lab.Relay), l.NS(lab.Relay), string(lab.Inet))
	for i, c := range cases {
		for j := range each {
			send(xlattest.Build(xlattest.Spec{Proto: 17, Src: c.src, SPort: uint16(40000 + j), Dst: c.dst, DPort: lab.EchoPort,
				TTL: 64, Payload: fmt.Appendf(nil, "martian-%d-%d\n", i, j)}))
		}
	}
	// A legitimate datagram after them gets through; none of theirs did.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(u.Host, lab.EchoPort), "after-the-martians"); err != nil {
		t.Fatalf("srv6 → LAN host after the martians: %v", err)
	}
	for _, p := range srv.Peers() {
		if p.Token != "after-the-martians" {
			t.Errorf("the LAN host heard %+v", p)
		}
	}
	offers := e2e.Section(t, u.D.EdgeS, "inbound", "the edge's inbound counts", func(map[string]uint64) bool { return true })
	if got := offers["accepted"] - offersBefore["accepted"]; got != 1 {
		t.Errorf("the edge accepted %d inbound flows, want the legitimate one (%v)", got, offers)
	}
	// Every class counted, as many as were sent (the legitimate round
	// trip came after them, so they have all been seen).
	after := datapath()
	for r, n := range want {
		if got := after[r] - before[r]; got != n {
			t.Errorf("relay counted %d %s, sent %d", got, r, n)
		}
	}
	t.Logf("relay datapath after: %v", after)
}

// sendFrames returns a function that sends whole Ethernet frames from
// the interface ifname of ns to the interface peerIf of peer (its MAC
// as the destination), through an AF_PACKET socket: a raw sender can
// claim any source address.
func sendFrames(t *testing.T, ns *lab.NS, ifname string, peer *lab.NS, peerIf string) func([]byte) {
	t.Helper()
	var dst, src net.HardwareAddr
	var ifindex int
	if err := peer.Do(func() error {
		ifi, err := net.InterfaceByName(peerIf)
		if err == nil {
			dst = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		src, ifindex = ifi.HardwareAddr, ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func(frame []byte) {
		copy(frame[0:6], dst)
		copy(frame[6:12], src)
		sa := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}
		copy(sa.Addr[:], dst)
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			t.Fatalf("send a frame on %s: %v", ifname, err)
		}
	}
}
