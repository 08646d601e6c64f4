package inbound

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
)

// The flood: floodRounds rounds, floodGap apart (well inside the relay's
// 10 s memory of refusals), each one datagram to every one of
// floodPorts ports on floodAddrs addresses of the site that the edge's
// policy refuses.
const (
	floodRounds = 8
	floodGap    = 100 * time.Millisecond
	floodPorts  = 8
	floodAddrs  = 4
)

type relayInbound struct {
	Refused int `json:"refused_flows_remembered"`
}

// TestInboundFloodRefused: srv6 sends round after round of datagrams to
// ports and addresses of the site that the edge refuses. The relay asks
// the edge about each flow once, not once per packet: the edge's count of
// refused offers stays at the number of flows, and the relay counts the
// rest as refused from memory. A legitimate inbound UDP flow opened
// during the flood works, its first datagram not lost. The flood (256
// datagrams from srv6 in about 0.8 s) may meet the relay's default miss
// bound of srv6's /64 (a burst of 200, 1000 a second) on a slow run: the
// relay's datapath drops the excess as drop-miss-rate before the agent
// sees it (counted, not asserted). The legitimate flow's first datagram
// comes after 64 of them, well inside the burst.
func TestInboundFloodRefused(t *testing.T) { e2e.BothCGNs(t, testInboundFloodRefused) }

func testInboundFloodRefused(t *testing.T, mode lab.CGNMode) {
	u := e2e.UpWithPolicy(t, mode, fmt.Sprintf("    - {proto: udp, hosts: %q, ports: \"%d\"}\n", lab.SitePrefix, lab.EchoPort))
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.LAN))
	policy := func() map[string]uint64 {
		return e2e.Section(t, u.D.EdgeS, "inbound", "the edge's inbound counts", func(map[string]uint64) bool { return true })
	}
	before := policy()

	targets := make([]netip.AddrPort, 0, floodPorts*floodAddrs)
	for i := range floodAddrs {
		a := u.Host
		if i > 0 {
			b := lab.SitePrefix.Addr().As16()
			b[14], b[15] = 0xf1, byte(i)
			a = netip.AddrFrom16(b)
		}
		for p := range floodPorts {
			targets = append(targets, netip.AddrPortFrom(a, uint16(20000+p)))
		}
	}
	pc, err := l.NS(lab.Srv6).ListenPacket("udp6", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	legit := make(chan error, 1)
	sent := 0
	for round := range floodRounds {
		for _, to := range targets {
			if _, err := pc.WriteTo([]byte("flood"), net.UDPAddrFromAddrPort(to)); err != nil {
				t.Fatalf("flood to %v: %v", to, err)
			}
			sent++
		}
		if round == 1 {
			go func() {
				_, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(u.Host, lab.EchoPort), "inbound-during-flood")
				legit <- err
			}()
		}
		time.Sleep(floodGap)
	}
	if err := <-legit; err != nil {
		t.Fatalf("srv6 → lan UDP during the flood: %v", err)
	}
	e2e.FirstNotLost(t, srv, "inbound-during-flood")

	// Every datagram is accounted for (the last offers took a round
	// trip): dropped over srv6's miss bound, refused by the edge or from
	// memory, or, in the first round, dropped for want of a relay port
	// (the lab's relay has 16 and the round offers 32 flows at once).
	// Both agents run with the default bound (the lab's files leave
	// miss_limit out).
	// The relay exempts the CGN's public address, where the edge's session
	// comes from, so the site's carriers' first packets are never bound.
	type missStatus struct {
		Rate, Burst uint64
		Exempt      []string
	}
	for _, sock := range []string{u.D.RelaySock, u.D.EdgeS} {
		if ms := e2e.Section(t, sock, "misses", "the miss bound", func(missStatus) bool { return true }); ms.Rate != 1000 || ms.Burst != 200 {
			t.Errorf("%s: miss bound %+v, want 1000 a second, burst 200", sock, ms)
		}
	}
	if ms := e2e.Section(t, u.D.RelaySock, "misses", "the relay's exemptions", func(missStatus) bool { return true }); !slices.Equal(ms.Exempt, []string{lab.CGNPublic.String()}) {
		t.Errorf("relay exempts %v from the miss bound, want the CGN's public address %v", ms.Exempt, lab.CGNPublic)
	}
	type counts map[string]uint64
	overRate := e2e.Section(t, u.D.RelaySock, "datapath", "the relay's counters", func(counts) bool { return true })["drop-miss-rate"]
	if overRate >= uint64(sent) {
		t.Errorf("the relay's datapath dropped all %d flood datagrams over srv6's miss bound", sent)
	}
	sp := e2e.Section(t, u.D.RelaySock, "carriers", "the relay's refusals", func(c e2e.RelaySlowpath) bool {
		return overRate+c.Slowpath["inbound-refused"]+c.Slowpath["inbound-refused-cached"]+c.Slowpath["inbound-no-port"] >= uint64(sent)
	}).Slowpath
	after := policy()
	offers := after["no-rule"] - before["no-rule"]
	t.Logf("%d flood datagrams to %d refused flows: %d over srv6's miss bound; the edge was offered %d (%.3f a datagram), the relay refused %d from memory, %d held and refused, %d with no port free",
		sent, len(targets), overRate, offers, float64(offers)/float64(sent), sp["inbound-refused-cached"], sp["inbound-refused"], sp["inbound-no-port"])
	if offers == 0 || offers > uint64(len(targets)) {
		t.Errorf("the edge refused %d offers for %d flows: want at most one a flow", offers, len(targets))
	}
	if sp["inbound-refused-cached"] < uint64(sent-2*len(targets))-overRate {
		t.Errorf("the relay refused only %d of %d datagrams from memory (%d over the miss bound)", sp["inbound-refused-cached"], sent, overRate)
	}
	if after["accepted"]-before["accepted"] != 1 {
		t.Errorf("edge accepted %d flows, want the legitimate one", after["accepted"]-before["accepted"])
	}
	in := e2e.Section(t, u.D.RelaySock, "inbound", "the relay's inbound section", func(relayInbound) bool { return true })
	if in.Refused < len(targets) {
		t.Errorf("the relay remembers %d refused flows, want %d", in.Refused, len(targets))
	}
}
