package inbound

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"golang.org/x/sys/unix"
)

// TestInboundIPv6TCPHandshakeLoss loses each of the handshake's segments
// that crosses the Internet once (and, last, every SYN to a silent host), in the router between the relay, the
// CGN and srv6, and checks the connection is made all the same by the
// retransmission meant for it, the CGN sees nothing invalid, and data
// goes both ways:
//   - the edge's carrier SYN: the edge sends it again;
//   - the relay's SYN/ACK to the CGN: the edge's SYN again, answered again;
//   - the host's SYN/ACK to srv6: srv6's SYN again, which the relay
//     answers itself (it never reaches the carrier).
func TestInboundIPv6TCPHandshakeLoss(t *testing.T) { e2e.BothCGNs(t, testInboundIPv6TCPHandshakeLoss) }

func testInboundIPv6TCPHandshakeLoss(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l := u.Lab
	invalid := dropInvalid(t, l.NS(lab.CGN))
	ln, err := l.NS(lab.LAN).Listen("tcp6", fmt.Sprintf("[::]:%d", e2e.InboundTCPPort))
	if err != nil {
		t.Fatal(err)
	}
	const syn, synAck = 0x02, 0x12
	for i, c := range []struct {
		name    string
		family  nftables.TableFamily
		flags   byte
		counter string // the relay's slow-path event the retransmission shows as; "" for the edge's
		edge    string
	}{
		{"carrier SYN", nftables.TableFamilyIPv4, syn, "", "handshake-carrier-syn-sent"},
		{"relay SYN/ACK to the CGN", nftables.TableFamilyIPv4, synAck, "handshake-carrier-syn-again", ""},
		{"host SYN/ACK to srv6", nftables.TableFamilyIPv6, synAck, "inbound-tcp-syn-answered", ""},
	} {
		dropped := dropFirst(t, l.NS(lab.Inet), c.family, c.flags)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		served := make(chan error, 1)
		go func() {
			sc, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			defer sc.Close()
			served <- e2e.ExchangeN(ctx, sc, uint64(2*i+2), uint64(2*i+1), 1<<20)
		}()
		start := time.Now()
		conn, err := l.NS(lab.Srv6).Dial(ctx, "tcp6", netip.AddrPortFrom(u.Host, e2e.InboundTCPPort).String())
		if err != nil {
			cancel()
			t.Fatalf("%s lost: connect: %v", c.name, err)
		}
		took := time.Since(start)
		err = e2e.ExchangeN(ctx, conn, uint64(2*i+1), uint64(2*i+2), 1<<20)
		conn.Close()
		if serr := <-served; err != nil || serr != nil {
			t.Errorf("%s lost: exchange: srv6 %v, lan %v", c.name, err, serr)
		}
		cancel()
		if n := dropped(); n != 1 {
			t.Errorf("%s lost: the router dropped %d packets, want exactly the first", c.name, n)
		}
		t.Logf("%s lost: connected in %v", c.name, took)
		if c.counter != "" {
			e2e.Section(t, u.D.RelaySock, "carriers", "the relay's "+c.counter, func(s struct {
				Slowpath map[string]uint64 `json:"slowpath"`
			}) bool {
				return s.Slowpath[c.counter] >= 1
			})
		} else {
			// The first carrier SYN and the one that got through.
			e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's "+c.edge, func(m map[string]uint64) bool { return m[c.edge] >= 2 })
		}
	}
	if n := invalid(); n != 0 {
		t.Errorf("the CGN dropped %d packets its conntrack found invalid", n)
	}

	// A host that never answers (its firewall drops the SYN): the edge
	// refuses after 3 s, and the relay gives the carrier port back.
	type relayStatus struct {
		Slowpath map[string]uint64   `json:"slowpath"`
		Ports    struct{ InUse int } `json:"ports"`
	}
	before := e2e.Section(t, u.D.RelaySock, "carriers", "the relay's ports", func(relayStatus) bool { return true })
	dropInput(t, l.NS(lab.LAN), silentTCPPort)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if c, err := l.NS(lab.Srv6).Dial(ctx, "tcp6", netip.AddrPortFrom(u.Host, silentTCPPort).String()); err == nil {
		c.Close()
		t.Error("a connection to a silent host was made")
	}
	e2e.Section(t, u.D.EdgeS, "slowpath", "the edge's silent-host count", func(m map[string]uint64) bool { return m["inbound-tcp-host-silent"] >= 1 })
	after := e2e.Section(t, u.D.RelaySock, "carriers", "the relay to give the ports back", func(s relayStatus) bool {
		return s.Ports.InUse == before.Ports.InUse && s.Slowpath["inbound-tcp-refused"] >= 1
	})
	t.Logf("silent host: relay ports in use %d before, %d after; %d offers refused", before.Ports.InUse, after.Ports.InUse, after.Slowpath["inbound-tcp-refused"])
}

// silentTCPPort is a port the LAN host's firewall drops SYNs to.
const silentTCPPort = 445

// dropInput makes ns drop IPv6 TCP segments to port on input.
func dropInput(t *testing.T, ns *lab.NS, port uint16) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv6, Name: "unmap_e2e_silent"})
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(port >> 8), byte(port)}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: drop TCP to %d: %v", ns.Name, port, err)
	}
}

// dropFirst makes ns drop the first forwarded TCP segment of the family
// whose SYN and ACK flags are flags, in a table of the test's own (which
// replaces the last one's); the returned function counts the drops.
func dropFirst(t *testing.T, ns *lab.NS, family nftables.TableFamily, flags byte) func() uint64 {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		c.DelTable(&nftables.Table{Family: f, Name: "unmap_e2e_loss"})
		_ = c.Flush() // absent the first time
	}
	tbl := c.AddTable(&nftables.Table{Family: family, Name: "unmap_e2e_loss"})
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{flags}},
		// Matches while what matched, this one included, stays under
		// 100 bytes: the first segment only (a SYN with options is 60
		// bytes in IPv4, 80 in IPv6).
		&expr.Quota{Bytes: 100, Over: false},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: drop the first segment: %v", ns.Name, err)
	}
	return func() uint64 {
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Errorf("%s: reading the drop counter: %v", ns.Name, err)
			return 0
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					return cnt.Packets
				}
			}
		}
		return 0
	}
}
