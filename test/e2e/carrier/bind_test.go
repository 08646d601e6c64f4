package carrier

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/test/e2e"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// TestHijackPredictablePayload has a rogue behind the CGN's address spray
// every relay carrier port with exactly the datagram the LAN host's flow
// will start with (a fixed query, as DNS or NTP clients send), and with
// the token keepalive that protocol 1 accepted for it (magic and the
// payload's hash), while the host opens the flow to srv6 and exchanges
// on it. The rogue must receive nothing, srv6 must see the query no
// more often than the host sent it (a hijacked carrier delivers the
// rogue's datagrams as the host's), the host's flow must work, and the
// relay must count the refusals. It fails on protocol 1.
func TestHijackPredictablePayload(t *testing.T) { e2e.BothCGNs(t, testHijackPredictablePayload) }

func testHijackPredictablePayload(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	srv := e2e.EchoServer(t, l.NS(lab.Srv6))
	query := []byte("what is the time?\n") // the same bytes on every run: predictable
	h := fnv.New64a()
	h.Write(query)
	oldProof := xlat.TokenKeepalive(h.Sum64()) // protocol 1's token of the query

	rogue, err := l.NS(lab.Rogue).ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	first, last := e2e.PortRange(t, e2e.CarrierPorts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	spray, stop := context.WithCancel(ctx)
	var got atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for spray.Err() == nil {
			for p := first; p <= last; p++ {
				to := e2e.UDPAddr(netip.AddrPortFrom(lab.RelayAddr, p))
				_, _ = rogue.WriteTo(query, to)
				_, _ = rogue.WriteTo(oldProof, to)
			}
			_ = rogue.SetReadDeadline(time.Now().Add(time.Millisecond))
			if n, _, err := rogue.ReadFrom(buf); err == nil && n > 0 {
				got.Add(1)
			}
		}
	})
	time.Sleep(200 * time.Millisecond) // the spray is on before the flow opens

	uc, err := l.NS(lab.LAN).Dial(ctx, "udp6", netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	answered, sent := 0, 0
	for range 5 {
		sent++
		if err := exchangeDatagram(uc, query, 500*time.Millisecond); err == nil {
			answered++
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // more spraying at the bound carrier
	stop()
	wg.Wait()

	if answered < 4 {
		t.Errorf("the host's flow under attack: %d/5 exchanges answered", answered)
	}
	if n := got.Load(); n != 0 {
		t.Errorf("the rogue received %d datagrams", n)
	}
	seen := 0
	for _, p := range srv.Peers() {
		if p.Token+"\n" != string(query) {
			continue
		}
		seen++
		if p.Remote.Addr() != u.Host {
			t.Errorf("srv6 got the query from %v, not the host %v", p.Remote, u.Host)
		}
	}
	if seen == 0 {
		t.Error("srv6 never got the host's query")
	}
	if seen > sent {
		// A hijacked carrier delivers the rogue's datagrams as the host's.
		t.Errorf("srv6 got the query %d times from the host's address; the host sent it %d times", seen, sent)
	}
	c := e2e.Section(t, d.RelaySock, "carriers", "the relay's counters", func(e2e.RelaySlowpath) bool { return true })
	refused := c.Slowpath["bind-bad-token"] + c.Slowpath["rebind-bad-token"] + c.Slowpath["bind-held-other-port"] +
		c.Slowpath["bind-no-proof"] + c.Slowpath["bind-already-bound"]
	if refused == 0 {
		t.Errorf("no attempt counted: %v", c.Slowpath)
	}
	if c.Slowpath["rebound"] != 0 {
		t.Errorf("the rogue got a carrier re-bound: %v", c.Slowpath)
	}
	t.Logf("srv6 saw the query %d times, all from the host; relay refusals %d (%v)", seen, refused, c.Slowpath)
}

// exchangeDatagram writes b on a connected UDP socket and waits up to d for
// the same bytes back.
func exchangeDatagram(c net.Conn, b []byte, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write(b); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) == string(b) {
			return nil
		}
	}
}

// TestFirstCarrierPacketLost drops exactly the first carrier packet of a
// new flow at the CGN (an nftables rule in its forward path: the first
// packet to the relay's carrier ports of the protocol, counted), for a
// UDP flow, an ICMPv6 echo (which rides a UDP carrier) and a TCP
// connection, and checks the flow then works: every exchange after the
// first is answered (the first too, for UDP and echo: the relay holds
// the flow's packets until the edge's next proof binds the carrier), and
// the TCP connection is made by the host's SYN again (same ISN).
func TestFirstCarrierPacketLost(t *testing.T) { e2e.BothCGNs(t, testFirstCarrierPacketLost) }

func testFirstCarrierPacketLost(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv6))
	first, last := e2e.PortRange(t, e2e.CarrierPorts)
	to := netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort)

	t.Run("udp", func(t *testing.T) {
		dropped := dropFirstCarrier(t, l.NS(lab.CGN), unix.IPPROTO_UDP, first, last)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		uc, err := l.NS(lab.LAN).Dial(ctx, "udp6", to.String())
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		answered := make([]bool, 6)
		for i := range answered {
			answered[i] = exchangeDatagram(uc, fmt.Appendf(nil, "loss-udp-%d\n", i), 500*time.Millisecond) == nil
		}
		checkAnswered(t, "udp", answered)
		if _, ok := srv.PeerOf("loss-udp-0"); !ok {
			t.Log("the first datagram never reached srv6")
		}
		if n := dropped(); n != 1 {
			t.Errorf("the CGN dropped %d carrier packets, want exactly the first", n)
		}
	})
	t.Run("echo", func(t *testing.T) {
		dropped := dropFirstCarrier(t, l.NS(lab.CGN), unix.IPPROTO_UDP, first, last)
		answered, err := pingSeries(l.NS(lab.LAN), lab.Srv6Addr, 6, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkAnswered(t, "echo", answered)
		if n := dropped(); n != 1 {
			t.Errorf("the CGN dropped %d carrier packets, want exactly the first", n)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		dropped := dropFirstCarrier(t, l.NS(lab.CGN), unix.IPPROTO_TCP, first, last)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		for i := range 5 {
			if _, err := l.NS(lab.LAN).EchoTCP(ctx, to, fmt.Sprintf("loss-tcp-%d", i)); err != nil {
				t.Fatalf("TCP connection %d: %v", i, err)
			}
			if i == 0 {
				t.Logf("first connection made in %v", time.Since(start).Round(time.Millisecond))
			}
		}
		if n := dropped(); n != 1 {
			t.Errorf("the CGN dropped %d carrier packets, want exactly the first (the first SYN)", n)
		}
	})
}

// checkAnswered wants every exchange after the first answered; the first
// is logged.
func checkAnswered(t *testing.T, what string, answered []bool) {
	t.Helper()
	n := 0
	for _, a := range answered[1:] {
		if a {
			n++
		}
	}
	if n != len(answered)-1 {
		t.Errorf("%s: %d/%d exchanges after the first answered (%v)", what, n, len(answered)-1, answered)
	}
	t.Logf("%s: first exchange answered: %v; then %d/%d", what, answered[0], n, len(answered)-1)
}

// dropFirstCarrier drops, in ns's forward path, the first IPv4 packet of
// protocol p to the relay's carrier ports first..last (an incrementing
// number generator equal to 0 only for the first packet it sees), and
// counts what it dropped; the returned func reads the count. The rule
// goes with the test.
func dropFirstCarrier(t *testing.T, ns *lab.NS, p byte, first, last uint16) func() uint64 {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	const name = "unmap_e2e_first_lost"
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
	_ = c.Flush() // absent the first time
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	be := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lab.RelayAddr.AsSlice()},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be(first)},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be(last)},
		&expr.Numgen{Register: 1, Modulus: 1 << 31, Type: unix.NFT_NG_INCREMENTAL},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: drop the first carrier packet: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		c.DelTable(tbl)
		_ = c.Flush()
	})
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

// pingSeries sends n ICMPv6 echo requests from ns to dst with one
// identifier (one flow), 300 ms apart, and reports which were answered
// within 1 s of their sending. hops sets the requests' hop limit (0: the
// default).
func pingSeries(ns *lab.NS, dst netip.Addr, n, hops int) ([]bool, error) {
	var c *icmp.PacketConn
	if err := ns.Do(func() (err error) { c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::"); return err }); err != nil {
		return nil, err
	}
	defer c.Close()
	if hops > 0 {
		if err := c.IPv6PacketConn().SetHopLimit(hops); err != nil {
			return nil, err
		}
	}
	id := int(time.Now().UnixNano()&0x7fff) + 1
	answered := make([]bool, n)
	sent := make([]time.Time, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		end := time.Now().Add(time.Duration(n)*300*time.Millisecond + time.Second)
		for time.Now().Before(end) {
			_ = c.SetReadDeadline(end)
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(58, buf[:k])
			if err != nil || m.Type != ipv6.ICMPTypeEchoReply {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || e.ID != id || e.Seq < 1 || e.Seq > n || string(e.Data) != "unmap-e2e-loss" {
				continue
			}
			if time.Since(sent[e.Seq-1]) <= time.Second {
				answered[e.Seq-1] = true
			}
		}
	}()
	for seq := 1; seq <= n; seq++ {
		b, _ := (&icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("unmap-e2e-loss")}}).Marshal(nil)
		sent[seq-1] = time.Now()
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return nil, err
		}
		time.Sleep(300 * time.Millisecond)
	}
	<-done
	return answered, nil
}

// TestProbeExpiringBeforeRelayBinds sends traceroute-like UDP probes from
// the LAN host whose hop limit runs out before the relay (at the CGN and
// at the Internet router): the flow's own packet never reaches the relay,
// but the edge's proofs (sent with an ordinary TTL) bind each carrier.
// Once the relay says a carrier is bound the edge sends it no more
// proofs.
func TestProbeExpiringBeforeRelayBinds(t *testing.T) {
	e2e.BothCGNs(t, testProbeExpiringBeforeRelayBinds)
}

func testProbeExpiringBeforeRelayBinds(t *testing.T, mode lab.CGNMode) {
	u := e2e.Up(t, mode)
	l, d := u.Lab, u.D
	type counters map[string]uint64
	before := e2e.Section(t, d.RelaySock, "carriers", "the relay's counters", func(e2e.RelaySlowpath) bool { return true }).Slowpath
	// Hop limit 2 expires at the CGN (the edge is hop 1), 3 at the
	// Internet router: neither probe reaches the relay.
	for _, hops := range []int{2, 3} {
		pc, err := l.NS(lab.LAN).ListenPacket("udp6", "[::]:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if err := ipv6.NewPacketConn(pc).SetHopLimit(hops); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo([]byte("probe\n"), e2e.UDPAddr(netip.AddrPortFrom(lab.Srv6Addr, 33434+uint16(hops)))); err != nil {
			t.Fatal(err)
		}
	}
	rc := e2e.Section(t, d.RelaySock, "carriers", "the probes' carriers bound", func(c e2e.RelaySlowpath) bool {
		return c.Slowpath["bound"] >= before["bound"]+2
	})
	t.Logf("relay: %d carriers bound by the probes' proofs (%v)", rc.Slowpath["bound"]-before["bound"], rc.Slowpath)
	if rc.Slowpath["ttl-exceeded-sent"] != before["ttl-exceeded-sent"] {
		t.Errorf("a probe reached the relay: %v", rc.Slowpath)
	}
	time.Sleep(500 * time.Millisecond) // CarrierBound reaches the edge
	sent := e2e.Section(t, d.EdgeS, "slowpath", "the edge's counters", func(counters) bool { return true })["proof-sent"]
	if sent < 2 {
		t.Errorf("the edge counts %d proofs sent for two carriers", sent)
	}
	// Past the whole schedule and the keepalive loop's proof interval: no
	// proof of a bound carrier.
	time.Sleep(6 * time.Second)
	again := e2e.Section(t, d.EdgeS, "slowpath", "the edge's counters", func(counters) bool { return true })
	if again["proof-sent"] != sent {
		t.Errorf("the edge sent %d more proofs after its carriers were bound (%v)", again["proof-sent"]-sent, again)
	}
}
