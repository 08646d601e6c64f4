package inbound

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/session/handshake"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

// The exhaustion attack: exhaustRounds rounds, exhaustGap apart. Each
// round srv6 sends one datagram from a new source port to a LAN port
// where a socket listens and never answers, srv4 one datagram from a new
// source port to the forwarded port of the site's public IPv4 (the LAN
// echo server answers those), and srv6 one spoofed TCP SYN (a raw
// socket; its source either in srv6's own /64, where no host answers
// the SYN/ACK, or in a /64 of its own) to the LAN host's echo port,
// which answers with a SYN/ACK no one acknowledges. Each round is three
// new inbound flows, well over the lab relay's 64 carrier ports per
// protocol within the run.
const (
	exhaustRounds = 100
	exhaustGap    = 40 * time.Millisecond
	exhaustSink   = 7777 // the LAN's silent UDP port
)

// The bounds the attack meets: at the relay, the default port share (of
// its 64 carrier ports a protocol, 32 for inbound flows; the spoofed
// SYNs from /64s of their own exceed it) and per-remote quota (256, not
// reached here); at the edge, a per-remote quota lowered to 16 (srv6's
// /64 and srv4 each exceed it), so the edge's own refusals show too.
const edgePerRemote = 16

// minUnanswered is how many of srv6's silent flows must be seen to end
// early: srv6's /64 has 16 flows at the edge, UDP and spoofed TCP
// together, of which the UDP ones come first (a round's datagram before
// its SYN, and every other SYN only from srv6's /64).
const minUnanswered = 8

type relayPorts struct {
	Slowpath map[string]uint64 `json:"slowpath"`
	Refused  map[string]uint64 `json:"ports_refused"`
	Flows    map[string]int    `json:"flows_by_site"`
}

// TestInboundExhaustion: Internet hosts open inbound flows to the site
// as fast as the relay offers them: UDP flows the LAN host never
// answers, UDP flows it answers, and TCP flows whose remote only sent a
// spoofed SYN. Then the LAN host opens new outbound UDP and TCP flows of
// its own: they all open, because inbound flows hold at most their share
// of the relay's carrier ports (the rest is kept for outbound) and each
// remote at most its quota. The refusals are counted at the relay
// (remote quota, port share) and at the edge (its lower remote quota),
// and the UDP flows the LAN host never answered end within a minute at
// one end or the other, not after the 5 min UDP timeout. On code without
// the bounds the attack takes every relay port and the LAN's flows fail.
func TestInboundExhaustion(t *testing.T) { e2e.BothCGNs(t, testInboundExhaustion) }

func testInboundExhaustion(t *testing.T, mode lab.CGNMode) {
	u := upWithLimits(t, mode)
	l := u.Lab
	e2e.EchoServer(t, l.NS(lab.LAN)) // answers srv4's forwarded flows and the spoofed SYNs
	e2e.EchoServer(t, l.NS(lab.Srv6))
	sink, err := l.NS(lab.LAN).ListenPacket("udp6", fmt.Sprintf("[::]:%d", exhaustSink))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	// Sockets: srv6's and srv4's UDP senders, one a round so each round
	// is a new flow, and srv6's raw socket (IPPROTO_RAW: the IPv6 header
	// is ours, its source spoofed).
	var raw net.PacketConn
	if err := l.NS(lab.Srv6).Do(func() (err error) { raw, err = net.ListenPacket("ip6:255", "::"); return err }); err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	udpFrom := func(ns *lab.NS, network string) net.PacketConn {
		pc, err := ns.ListenPacket(network, ":0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	silentTo := netip.AddrPortFrom(u.Host, exhaustSink)
	forwardTo := netip.AddrPortFrom(lab.SitePublic4, lab.ForwardPort)
	start := time.Now()
	for i := range exhaustRounds {
		if _, err := udpFrom(l.NS(lab.Srv6), "udp6").WriteTo([]byte("exhaust"), e2e.UDPAddr(silentTo)); err != nil {
			t.Fatalf("srv6 → %v: %v", silentTo, err)
		}
		if _, err := udpFrom(l.NS(lab.Srv4), "udp4").WriteTo([]byte("exhaust"), e2e.UDPAddr(forwardTo)); err != nil {
			t.Fatalf("srv4 → %v: %v", forwardTo, err)
		}
		src := spoofed(i)
		syn := handshake.Segment{SrcPort: uint16(30000 + i), DstPort: lab.EchoPort, Seq: uint32(i) * 7919, Flags: handshake.SYN, Window: 64800}
		pkt, err := handshake.Packet(src, u.Host, syn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.WriteTo(pkt, &net.IPAddr{IP: u.Host.AsSlice()}); err != nil {
			t.Fatalf("spoofed SYN from %v: %v", src, err)
		}
		time.Sleep(exhaustGap)
	}
	t.Logf("%d rounds of 3 new inbound flows in %v", exhaustRounds, time.Since(start))
	// The offers end within the relay's 5 s setup bound.
	e2e.Section(t, u.D.RelaySock, "inbound", "the attack's offers to end", func(in struct {
		Pending map[string]int `json:"pending_offers_by_site"`
	}) bool {
		return len(in.Pending) == 0
	})
	before := e2e.Section(t, u.D.RelaySock, "carriers", "the relay's counters", func(relayPorts) bool { return true })

	// The LAN host's own new flows, UDP and TCP, each a new carrier.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	to := netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort)
	const own = 6
	opened := 0
	for i := range own {
		fctx, fcancel := context.WithTimeout(ctx, 4*time.Second)
		_, errU := l.NS(lab.LAN).EchoUDP(fctx, to, fmt.Sprintf("own-udp-%d", i))
		_, errT := l.NS(lab.LAN).EchoTCP(fctx, to, fmt.Sprintf("own-tcp-%d", i))
		fcancel()
		if errU != nil {
			t.Errorf("the LAN host's UDP flow %d after the attack: %v", i, errU)
		} else {
			opened++
		}
		if errT != nil {
			t.Errorf("the LAN host's TCP flow %d after the attack: %v", i, errT)
		} else {
			opened++
		}
	}
	t.Logf("the LAN host opened %d of its %d new flows after the attack (relay flows of the site before them: %d)", opened, 2*own, before.Flows["home"])

	sp, edge := before.Slowpath, e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's counters", func(map[string]uint64) bool { return true })
	t.Logf("relay: remote quota %d, site quota %d, port share %d (allocator %d), offer rate %d; edge: remote quota %d, port share %d",
		sp["inbound-remote-quota"], sp["inbound-site-quota"], sp["inbound-port-share"]+sp["inbound-tcp-port-share"], before.Refused["inbound-share"],
		sp["inbound-offer-rate"], edge["inbound-remote-quota"], edge["inbound-port-share"])
	if before.Refused["inbound-share"] == 0 || sp["inbound-port-share"]+sp["inbound-tcp-port-share"] == 0 {
		t.Errorf("the relay refused no flow over the inbound share of its ports (allocator %d)", before.Refused["inbound-share"])
	}
	if edge["inbound-remote-quota"] == 0 {
		t.Errorf("the edge refused no flow over a remote's quota of %d", edgePerRemote)
	}

	// srv6's silent flows end within unanswered_udp (30 s) and a look at
	// the counters (20 s) at one end or the other; the other end hears of
	// it. The flows srv4 opened are answered: they stay.
	wctx, wcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer wcancel()
	var ended uint64
	waited := time.Now()
	_, err = lab.WaitSection(wctx, u.D.RelaySock, "carriers", func(c relayPorts) bool {
		e, err := lab.WaitSection(wctx, u.D.EdgeS, "slowpath", func(map[string]uint64) bool { return true })
		ended = c.Slowpath["inbound-unanswered"] + e["inbound-unanswered"]
		return err == nil && ended >= minUnanswered
	})
	if err != nil {
		t.Errorf("unanswered inbound UDP flows ended: %d within 90 s, want at least %d (%v)", ended, minUnanswered, err)
	} else {
		t.Logf("%d unanswered inbound UDP flows ended %v after the attack's offers", ended, time.Since(waited))
	}
}

// spoofed is the source of round i's SYN: every other one in srv6's /64
// (one remote, whose quota it meets), the others each from a /64 of
// their own (many remotes, which only the port share bounds).
func spoofed(i int) netip.Addr {
	b := lab.Srv6Addr.As16()
	if i%2 == 0 {
		b[13], b[14], b[15] = 0x5f, byte(i>>8), byte(i)
		return netip.AddrFrom16(b)
	}
	b[4], b[5], b[6], b[7] = 0x77, 0x77, byte(i>>8), byte(i)
	return netip.AddrFrom16(b)
}

// upWithLimits is up with the edge's per-remote quota of the attack
// test in its file.
func upWithLimits(t *testing.T, mode lab.CGNMode) e2e.Running {
	t.Helper()
	u := e2e.Running{Lab: labtest.New(t, lab.Options{CGNMode: mode, CGNUDPTimeout: 30 * time.Second})}
	u.D = e2e.Deploy(t, lab.BuildUnmap(t))
	b, err := os.ReadFile(u.D.EdgeConfig)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimRight(string(b), "\n") + fmt.Sprintf("\ninbound_limits: {per_remote: %d}\n", edgePerRemote)
	if err := os.WriteFile(u.D.EdgeConfig, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	u.Relay = u.D.StartRelay(t, u.Lab)
	u.Edge = u.D.StartEdge(t, u.Lab)
	u.D.DumpOnFailure(t)
	u.Session = e2e.Section(t, u.D.EdgeS, "session", "the edge's session", func(s e2e.EdgeSession) bool { return s.Connected })
	u.Host = e2e.WaitAddr(t, u.Lab.NS(lab.LAN), lab.SitePrefix)
	return u
}
