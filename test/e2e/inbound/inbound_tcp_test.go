package inbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestInboundIPv6TCP proves the carrier handshake: srv6 connects to a TCP
// server on the LAN host's own address through the relay and the CGN, and
// the two exchange 50 MB each way, verified by hash. The CGN drops every
// packet its conntrack finds invalid (TCP window tracking is on), counts
// them, and must have seen none on a connection it tracks as established:
// the carrier's sequence numbers and windows are the flow's. A connection
// to a port the edge's policy refuses fails, and the refusal is counted
// at both agents.
func TestInboundIPv6TCP(t *testing.T) { e2e.BothCGNs(t, testInboundIPv6TCP) }

func testInboundIPv6TCP(t *testing.T, mode lab.CGNMode) {
	u := e2e.UpWithPolicy(t, mode, fmt.Sprintf(`    - {proto: udp, hosts: "%[1]s"}
    - {proto: icmp, hosts: "%[1]s"}
    - {proto: tcp, hosts: "%[1]s", ports: "1-1023"}
`, lab.SitePrefix))
	l := u.Lab
	invalid := dropInvalid(t, l.NS(lab.CGN))
	lan := l.NS(lab.LAN)
	ln, err := lan.Listen("tcp6", fmt.Sprintf("[::]:%d", e2e.InboundTCPPort))
	if err != nil {
		t.Fatal(err)
	}
	refusedLn, err := lan.Listen("tcp6", fmt.Sprintf("[::]:%d", e2e.RefusedTCPPort))
	if err != nil {
		t.Fatal(err)
	}
	go func() { // accepting proves nothing got through; the dial must fail
		for {
			c, err := refusedLn.Accept()
			if err != nil {
				return
			}
			t.Errorf("the refused port accepted a connection from %v", c.RemoteAddr())
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type side struct {
		remote netip.AddrPort
		err    error
	}
	served := make(chan side, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- side{err: err}
			return
		}
		defer c.Close()
		served <- side{netip.MustParseAddrPort(c.RemoteAddr().String()), e2e.ExchangeN(ctx, c, 2, 1, e2e.ExchangeBytes)}
	}()
	start := time.Now()
	c, err := l.NS(lab.Srv6).Dial(ctx, "tcp6", netip.AddrPortFrom(u.Host, e2e.InboundTCPPort).String())
	if err != nil {
		t.Fatalf("srv6 → lan TCP connect: %v", err)
	}
	inConnect := time.Since(start)
	t.Logf("srv6 → lan: connected in %v", inConnect)
	// The CGN tracks the carrier as an established connection: it saw a
	// whole three-way handshake with the flow's own numbers.
	established := false
	for deadline := time.Now().Add(2 * time.Second); !established && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		established = carrierState(t, l.NS(lab.CGN)) == tcpEstablished
	}
	if !established {
		t.Error("the CGN's conntrack does not track the carrier as established")
	}
	cerr := e2e.ExchangeN(ctx, c, 1, 2, e2e.ExchangeBytes)
	c.Close()
	s := <-served
	if cerr != nil || s.err != nil {
		t.Fatalf("50 MB each way: srv6 side %v, lan side %v", cerr, s.err)
	}
	inTime := time.Since(start)
	t.Logf("srv6 ↔ lan: 50 MB each way verified in %v", inTime)
	if s.remote.Addr() != lab.Srv6Addr {
		t.Errorf("the LAN host saw %v, want srv6's own address %v", s.remote, lab.Srv6Addr)
	}
	if n := invalid(); n != 0 {
		t.Errorf("the CGN dropped %d packets its conntrack found invalid", n)
	}
	// Both agents ran the handshake (and did not, say, fall back to some
	// other path).
	es := e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's handshake", func(m map[string]uint64) bool { return m["handshake-completed"] == 1 })
	rs := e2e.Section(t, u.D.RelaySock, "carriers", "the relay's handshake", func(c struct {
		Slowpath map[string]uint64 `json:"slowpath"`
	}) bool {
		return c.Slowpath["handshake-completed"] == 1 && c.Slowpath["handshake-synack-sent"] >= 1
	})
	t.Logf("slow path: edge %v; relay %v", es, rs.Slowpath)

	outboundBaseline(t, ctx, l, u.Host, ln, inConnect, inTime)

	// The refused port: the edge's policy says no, the relay drops the SYN.
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	if c, err := l.NS(lab.Srv6).Dial(rctx, "tcp6", netip.AddrPortFrom(u.Host, e2e.RefusedTCPPort).String()); err == nil {
		c.Close()
		t.Error("a connection to a port the policy refuses was made")
	}
	e2e.Section(t, u.D.EdgeS, "inbound", "the edge's refusal count", func(m map[string]uint64) bool { return m["no-rule"] >= 1 })

	// An allowed port where nothing listens: the host's RST comes back
	// to srv6 as its own connect's answer, at once.
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	start = time.Now()
	if c, err := l.NS(lab.Srv6).Dial(cctx, "tcp6", netip.AddrPortFrom(u.Host, e2e.ClosedTCPPort).String()); err == nil {
		c.Close()
		t.Error("a connection to a port nothing listens on was made")
	} else if !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("connect to a closed port: %v, want connection refused", err)
	} else {
		t.Logf("connect to a closed port refused in %v", time.Since(start))
	}
	e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's host reset count", func(m map[string]uint64) bool { return m["inbound-tcp-host-reset"] >= 1 })
	e2e.Section(t, u.D.RelaySock, "carriers", "the relay's refusal count", func(c struct {
		Slowpath map[string]uint64 `json:"slowpath"`
	}) bool {
		return c.Slowpath["inbound-tcp-refused"] >= 2 && c.Slowpath["inbound-tcp-reset-sent"] >= 1
	})
}

// outboundBaseline runs the same exchange the other way, lan → srv6
// through unmap's outbound path, and logs inbound's figures as ratios to
// it: the handshake's cost at connect, and the goodput (no timing is
// asserted).
func outboundBaseline(t *testing.T, ctx context.Context, l *lab.Lab, host netip.Addr, lanLn net.Listener, inConnect, inTime time.Duration) {
	ln, err := l.NS(lab.Srv6).Listen("tcp6", fmt.Sprintf("[::]:%d", e2e.InboundTCPPort))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	outConnect, err := e2e.ExchangeOver(ctx, ln, l.NS(lab.LAN), netip.AddrPortFrom(lab.Srv6Addr, e2e.InboundTCPPort))
	if err != nil {
		t.Errorf("baseline lan → srv6: %v", err)
		return
	}
	outTime := time.Since(start)
	t.Logf("figures: first connect inbound %v, outbound %v (×%.2f); 50 MB each way inbound %v, outbound %v (inbound goodput ×%.2f of outbound)",
		inConnect, outConnect, float64(inConnect)/float64(outConnect), inTime, outTime, float64(outTime)/float64(inTime))
	const n = 5 // the lab's relay has 64 carrier ports, and TCP flows hold theirs until they idle out
	inMed, inMax := connectTimes(t, ctx, l.NS(lab.Srv6), lanLn, netip.AddrPortFrom(host, e2e.InboundTCPPort), n)
	outMed, outMax := connectTimes(t, ctx, l.NS(lab.LAN), ln, netip.AddrPortFrom(lab.Srv6Addr, e2e.InboundTCPPort), n)
	t.Logf("figures: %d new connections each: inbound median %v max %v, outbound median %v max %v (inbound median ×%.2f)",
		n, inMed, inMax, outMed, outMax, float64(inMed)/float64(outMed))
}

// connectTimes makes n connections one after the other from `from` to
// to, whose listener ln accepts and closes them, and returns the median
// and the longest connect time.
func connectTimes(t *testing.T, ctx context.Context, from *lab.NS, ln net.Listener, to netip.AddrPort, n int) (median, longest time.Duration) {
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var d []time.Duration
	for range n {
		start := time.Now()
		c, err := from.Dial(ctx, "tcp6", to.String())
		if err != nil {
			t.Errorf("connect %v: %v", to, err)
			return 0, 0
		}
		d = append(d, time.Since(start))
		c.Close()
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)-1]
}

// dropInvalid makes the CGN drop, and count, every forwarded packet its
// conntrack marks invalid (out of window, a SYN/ACK where none fits...),
// in a table of the test's own; the returned function reads the count.
func dropInvalid(t *testing.T, ns *lab.NS) func() uint64 {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "unmap_e2e_invalid"})
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitINVALID), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("cgn: drop invalid: %v", err)
	}
	return func() uint64 {
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Errorf("cgn: reading the invalid counter: %v", err)
			return 0
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					return cnt.Packets
				}
			}
		}
		t.Error("cgn: no invalid counter")
		return 0
	}
}

// tcpEstablished is TCP_CONNTRACK_ESTABLISHED.
const tcpEstablished = 3

// carrierState is the conntrack state of the CGN's TCP connection from
// the edge to the relay's carrier ports (0 if there is none).
func carrierState(t *testing.T, ns *lab.NS) uint8 {
	t.Helper()
	flows, err := ns.Netlink().ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Errorf("cgn conntrack: %v", err)
		return 0
	}
	lo, hi := e2e.PortRange(t, e2e.CarrierPorts)
	for _, f := range flows {
		if f.Forward.Protocol != unix.IPPROTO_TCP || f.Forward.DstPort < lo || f.Forward.DstPort > hi {
			continue
		}
		if p, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok {
			return p.State
		}
	}
	return 0
}
