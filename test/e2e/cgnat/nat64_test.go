package cgnat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"golang.org/x/sys/unix"
)

// TestNAT64: the IPv6-only subscriber sub6 reaches srv4 at its address in
// 64:ff9b::/96 by UDP, TCP and ping, through the relay's NAT64 (relay_sub
// on the sub6 link, cgnat.more_interfaces); srv4 sees a pool address on
// a block port, the same for both exchanges (one /64, paired pooling); a
// 1500-byte IPv6 datagram arrives at srv4 as a 1480-byte IPv4 packet with
// DF (captured on srv4's link) and its 1500-byte answer comes back whole;
// 1481 bytes of IPv4 with DF from srv4 to the mapping are answered
// fragmentation needed, MTU 1480 (srv4's kernel learns the path MTU);
// the block log holds the grant to sub6's /64, and `unmap relay lookup`
// names the /64 for the port srv4 saw.
func TestNAT64(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := netip.AddrPortFrom(lab.NAT64Addr(lab.Srv4Addr), lab.EchoPort)
	first, last := e2e.PortRange(t, lab.SubPorts)
	sub6 := l.NS(lab.Sub6)
	var seen []netip.AddrPort
	for _, network := range []string{"udp", "tcp"} {
		// The first packet finds no block: the relay grants the /64 one
		// and the subscriber's stack sends again.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		token := "nat64-" + network
		var err error
		if network == "tcp" {
			_, err = sub6.EchoTCP(ctx, to, token)
		} else {
			_, err = sub6.EchoUDP(ctx, to, token)
		}
		cancel()
		if err != nil {
			t.Fatalf("%s from sub6 to %v: %v", network, to, err)
		}
		p, ok := srv.PeerOf(token)
		if !ok {
			t.Fatalf("%s: srv4 never saw the exchange", network)
		}
		if a := p.Remote; !lab.SubPool4.Contains(a.Addr()) || a.Port() < first || a.Port() > last {
			t.Errorf("%s: srv4 saw %v, want an address of %v on a block port %d-%d", network, a, lab.SubPool4, first, last)
		}
		seen = append(seen, p.Remote)
	}
	if seen[0].Addr() != seen[1].Addr() {
		t.Errorf("the /64's UDP and TCP left from %v and %v: not paired", seen[0].Addr(), seen[1].Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub6.Ping(ctx, to.Addr()); err != nil {
		t.Errorf("ping from sub6 to %v: %v", to.Addr(), err)
	}

	// Full MTU: 1500 bytes of IPv6 become 1480 of IPv4, DF set (RFC 7915
	// 5.1), and srv4's 1480-byte answer comes back as 1500 bytes.
	isBig := func(c lab.Captured) bool {
		ip, ok := c.Packet.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		return ok && !c.Outgoing && ip.Protocol == layers.IPProtocolUDP && ip.SrcIP.Equal(seen[0].Addr().AsSlice()) && ip.Length > 1000
	}
	capt, err := l.NS(lab.Srv4).Capture(string(lab.Inet), lab.CaptureOptions{Max: 1, Timeout: 8 * time.Second, Match: isBig})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub6.EchoUDPPacket(ctx, to, "nat64-mtu", lab.MTU); err != nil {
		t.Errorf("a 1500-byte IPv6 datagram through NAT64 and back: %v", err)
	}
	// The capture ends at its one packet (Max) or its timeout. Not
	// stopped here: Stop closes the socket at once, and under load (CI)
	// its reader had not yet taken the packet already queued on it.
	pkts, err := capt.Wait()
	if err != nil || len(pkts) == 0 {
		t.Fatalf("no large IPv4 packet from the pool at srv4 (%v)", err)
	}
	ip := pkts[0].Packet.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip.Length != lab.MTU-20 || ip.Flags&layers.IPv4DontFragment == 0 {
		t.Errorf("srv4 received an IPv4 packet of %d bytes, flags %v; want %d with DF", ip.Length, ip.Flags, lab.MTU-20)
	}

	// The other way, one byte too many: 1481 bytes of IPv4 with DF from
	// srv4 to the UDP mapping would be 1501 of IPv6; the relay answers
	// fragmentation needed, MTU 1480, and srv4's kernel learns it.
	var c *net.UDPConn
	if err := l.NS(lab.Srv4).Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(seen[0]))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	sockopt := func(set bool) (v int, err error) {
		cerr := rc.Control(func(fd uintptr) {
			if set {
				err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
			} else {
				v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU)
			}
		})
		return v, errors.Join(cerr, err)
	}
	if _, err := sockopt(true); err != nil {
		t.Fatal(err)
	}
	if err := e2e.Retry(3*time.Second, func() error {
		_, _ = c.Write(make([]byte, lab.MTU-20-28+1)) // 1481 bytes of IPv4
		time.Sleep(100 * time.Millisecond)
		if mtu, err := sockopt(false); err != nil || mtu != lab.MTU-20 {
			return fmt.Errorf("srv4's path MTU to %v: %d (%v), want %d", seen[0], mtu, err, lab.MTU-20)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	b, err := os.ReadFile(u.D.CGNATLog)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Event      string     `json:"event"`
		Subscriber netip.Addr `json:"subscriber"`
		Address    netip.Addr `json:"address"`
		PortFirst  uint16     `json:"port_first"`
		PortLast   uint16     `json:"port_last"`
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil {
		t.Fatalf("block log: want the one grant, got:\n%s", b)
	}
	if rec.Event != "grant" || rec.Subscriber != lab.Sub6Net.Addr() || rec.Address != seen[0].Addr() {
		t.Errorf("block log record %+v, want a grant to %v on %v", rec, lab.Sub6Net.Addr(), seen[0].Addr())
	}
	for _, p := range seen {
		if p.Port() < rec.PortFirst || p.Port() > rec.PortLast {
			t.Errorf("srv4 saw %v, outside the logged block %d-%d", p, rec.PortFirst, rec.PortLast)
		}
	}
	e2e.Section(t, u.D.RelaySock, "cgnat", "the relay's cgnat counts", func(m map[string]uint64) bool {
		return m["grants"] == 1 && m["subscribers"] == 1 && m["errors"] == 0
	})
	out, err := l.NS(lab.Relay).Output(ctx, u.D.Bin, "relay", "lookup", "-c", u.D.RelayConfig, seen[0].String())
	if err != nil || !strings.Contains(string(out), lab.Sub6Net.Addr().String()) {
		t.Errorf("unmap relay lookup %v: %v\n%s", seen[0], err, out)
	}
}

// TestNAT64FlowsOutliveRelayRestart: TestSubscriberFlowsOutliveRelayRestart
// for the IPv6-only subscriber: its TCP connection and UDP flow through
// NAT64 keep going while the relay agent is down (SIGTERM, SIGKILL) and
// after, on the same public address:port (cg_mappings6 and cg_slots6 are
// pinned); a new flow after the restart takes a port of the /64's block,
// and the block log holds the one grant.
func TestNAT64FlowsOutliveRelayRestart(t *testing.T) {
	to := netip.AddrPortFrom(lab.NAT64Addr(lab.Srv4Addr), lab.EchoPort)
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "SIGTERM", true: "SIGKILL"}[crash], func(t *testing.T) { testRestartFrom(t, crash, lab.Sub6, to) })
	}
}
