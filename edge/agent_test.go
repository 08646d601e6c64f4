package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/relay"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/status"
)

// pkiDir makes a CA, a relay certificate for 127.0.0.1 and an edge
// certificate for site, as `unmap cert` lays them out.
func pkiDir(t *testing.T, site string) string {
	t.Helper()
	dir := t.TempDir()
	v := pki.Validity{Length: time.Hour}
	ca, err := pki.NewCA("test", v)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ca.IssueRelay(nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, v)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ca.IssueEdge(site, v)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		ca.SaveCert(dir, false),
		r.Save(dir, pki.RelayFile, pki.RelayKeyFile, false),
		e.Save(dir, pki.EdgeFile, pki.EdgeKeyFile, false),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startRelay runs the real relay agent on loopback with a relay.yaml
// granting site "home" a quota of quota flows.
func startRelay(t *testing.T, dir string, quota int) (addr, socket string) {
	t.Helper()
	addr = fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	yaml := fmt.Sprintf(`listen: %q
tls: {ca: %s, cert: %s, key: %s}
interface: lo
addresses: [198.51.100.6]
carrier_ports: 20000-20099
sites:
  - {id: home, prefix: "2001:db8:5::/56", ipv4: 203.0.113.10, max_flows: %d}
`, addr, filepath.Join(dir, pki.CAFile), filepath.Join(dir, pki.RelayFile), filepath.Join(dir, pki.RelayKeyFile), quota)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := relay.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	socket = filepath.Join(dir, "relay.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- relay.Run(ctx, s, relay.Options{Version: "test", StatusSocket: socket, Log: slog.New(slog.DiscardHandler), ControlOnly: true})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return addr, socket
}

// startEdge runs the edge agent's control side (no interfaces: the
// datapath and the LAN are not part of this test).
func startEdge(t *testing.T, dir, relayAddr string) *agent {
	t.Helper()
	c := Config{Site: "home", Relay: relayAddr, LAN: "lan", WAN: "wan", CarrierPorts: "61000-61099",
		TLS: confTLS(dir)}
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(s, netip.MustParseAddr("100.64.0.2"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, cert, err := pki.LoadIdentity(s.TLS.Cert, s.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := pki.LoadPool(s.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	a.ctl, err = control.NewClient(control.ClientConfig{
		Relay: s.Relay, Identity: cert, RelayCAs: cas, Handler: a,
		Hello: proto.Hello{Capabilities: capabilities, Site: s.Site},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ctl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, err := a.ctl.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return a
}

func flowsAtRelay(t *testing.T, socket string) int {
	t.Helper()
	st, err := status.Fetch(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Flows map[string]int `json:"flows_by_site"`
	}
	if err := json.Unmarshal(st.Sections["carriers"], &c); err != nil {
		t.Fatal(err)
	}
	return c.Flows["home"]
}

// TestOpenCloseThroughRelay opens and closes flows between the edge agent
// and the real relay agent over QUIC with mutual TLS, and checks both
// tables and the quota.
func TestOpenCloseThroughRelay(t *testing.T) {
	dir := pkiDir(t, "home")
	addr, socket := startRelay(t, dir, 2)
	a := startEdge(t, dir, addr)
	if g, up := a.Grant(); !up || g == nil || g.Prefix.String() != "2001:db8:5::/56" || g.PublicIPv4.String() != "203.0.113.10" {
		t.Fatalf("grant %+v", g)
	}
	ctx := context.Background()
	flow := func(port uint16) session.Flow {
		return session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort(fmt.Sprintf("[2001:db8:5::2]:%d", port)),
			Remote: netip.MustParseAddrPort("[2001:db8:6::2]:80")}
	}
	c1, err := a.Open(ctx, flow(1000), session.TCP, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Relay.Addr().String() != "198.51.100.6" || c1.Relay.Port() < 20000 || c1.Relay.Port() > 20099 ||
		c1.Edge.Port() < 61000 || c1.Edge.Port() > 61099 {
		t.Errorf("carrier %v", c1)
	}
	if _, err := a.Open(ctx, flow(1001), session.TCP, 1); err != nil {
		t.Fatal(err)
	}
	// The third exceeds the site's quota of 2: refused, nothing left over.
	if _, err := a.Open(ctx, flow(1002), session.TCP, 1); !errors.Is(err, proto.CodeQuotaExceeded) {
		t.Fatalf("third open: %v, want quota exceeded", err)
	}
	if n := a.flows.Len(); n != 2 || a.ports.InUse() != 2 {
		t.Errorf("edge holds %d flows and %d ports after a refusal, want 2 and 2", n, a.ports.InUse())
	}
	if n := flowsAtRelay(t, socket); n != 2 {
		t.Errorf("relay holds %d flows, want 2", n)
	}
	// A flow outside the site's prefix is refused by the relay.
	bad := flow(1003)
	bad.Site = netip.MustParseAddrPort("[2001:db8:7::2]:1003")
	if _, err := a.Open(ctx, bad, session.TCP, 1); !errors.Is(err, proto.CodeAddressNotGranted) {
		t.Errorf("foreign source: %v, want address not granted", err)
	}

	a.Close(flow(1000), proto.CodeClosed)
	waitFor(t, "the relay to drop the closed flow", func() (int, bool) {
		n := flowsAtRelay(t, socket)
		return n, n == 1
	})
	if _, err := a.Open(ctx, flow(1002), session.TCP, 1); err != nil {
		t.Fatalf("open after a close freed the quota: %v", err)
	}
}

// TestInboundOffer checks the edge applies its policy to the relay's
// offers.
func TestInboundOffer(t *testing.T) {
	dir := pkiDir(t, "home")
	addr, _ := startRelay(t, dir, 10)
	a := startEdge(t, dir, addr)
	a.policy = NewPolicy([]Allow{{Proto: session.UDP, Hosts: netip.MustParsePrefix("2001:db8:5::10/128"), Ports: confRange(22, 22)},
		{Proto: session.TCP, Hosts: netip.MustParsePrefix("2001:db8:5::10/128"), Ports: confRange(22, 22)}}, nil)
	ok := &proto.FlowOffer{Flow: session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::10]:22"),
		Remote: netip.MustParseAddrPort("[2001:db8:6::2]:40000")}, CarrierProto: session.UDP, Relay: netip.MustParseAddrPort("198.51.100.6:20001")}
	r := a.Offer(ok)
	if r == nil || r.Result != proto.CodeOK || r.EdgePort < 61000 || r.Token == 0 {
		t.Fatalf("accepted offer: %+v", r)
	}
	if e, found := a.flows.Get(ok.Flow); !found || e.Carrier.Relay != ok.Relay {
		t.Errorf("accepted flow in table: %+v %v", e, found)
	}
	no := *ok
	no.Flow.Site = netip.MustParseAddrPort("[2001:db8:5::10]:23")
	if r := a.Offer(&no); r != nil {
		t.Errorf("refused offer answered %+v", r)
	}
	// TCP is accepted by the policy, but an offer without the remote's
	// SYN cannot start the carrier handshake.
	tcp := *ok
	tcp.Flow.Proto, tcp.CarrierProto = session.TCP, session.TCP
	if r := a.Offer(&tcp); r == nil || r.Result != proto.CodeMalformed {
		t.Errorf("tcp offer answered %+v", r)
	}
	if a.Counts()["inbound-tcp-bad-syn"] != 1 {
		t.Errorf("slow-path counts %v", a.Counts())
	}
	if got := a.policy.Counts(); got["accepted"] != 2 || got["no-rule"] != 1 {
		t.Errorf("policy counts %v", got)
	}
}

// TestPickedCarrier opens flows with edge-chooses-r through the real
// relay agent: the relay grants the R the edge picked, refuses one that a
// flow from the same CGNAT address already holds (the edge then lets the
// relay choose), and the edge never picks an R its flows hold.
func TestPickedCarrier(t *testing.T) {
	dir := pkiDir(t, "home")
	addr, socket := startRelay(t, dir, 10)
	a := startEdge(t, dir, addr)
	g, up := a.Grant()
	if !up || !g.Capabilities.Has(proto.CapEdgeChoosesR) {
		t.Fatalf("grant %+v: no edge-chooses-r", g)
	}
	a.setRelayPorts(g)
	ctx := context.Background()
	flow := func(port uint16) session.Flow {
		return session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort(fmt.Sprintf("[2001:db8:5::2]:%d", port)),
			Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	}
	// The relay chooses for one flow; the edge records its R.
	chosen, err := a.Open(ctx, flow(1), session.UDP, 1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.AddrPort]bool{chosen.Relay: true}
	for port := uint16(2); port < 8; port++ {
		c, ok := a.pick(flow(port), session.UDP, 2)
		if !ok {
			t.Fatalf("flow %d: no pick", port)
		}
		if seen[c.Relay] {
			t.Fatalf("flow %d: picked %v, which another flow holds", port, c.Relay)
		}
		seen[c.Relay] = true
		if err := a.confirm(ctx, flow(port), c, 2); err != nil {
			t.Fatalf("flow %d on picked %v: %v", port, c.Relay, err)
		}
		if e, _ := a.flows.Get(flow(port)); e.Carrier.Relay != c.Relay {
			t.Errorf("flow %d: table has %v, picked %v", port, e.Carrier.Relay, c.Relay)
		}
	}
	if n := flowsAtRelay(t, socket); n != 7 {
		t.Errorf("relay holds %d flows, want 7", n)
	}
	// Another flow naming an R in use is refused as taken.
	_, err = a.ctl.Open(ctx, &proto.FlowOpen{Flow: flow(9), CarrierProto: session.UDP, EdgePort: 61099, Relay: chosen.Relay, Token: 3})
	if !errors.Is(err, proto.CodeFlowExists) {
		t.Errorf("open on a taken R: %v, want flow-exists", err)
	}
	// Closing gives the R back to the edge's pool.
	pool, _ := a.rports.pool(session.UDP)
	before := pool.InUse()
	a.Close(flow(1), proto.CodeClosed)
	if after := pool.InUse(); after != before-1 {
		t.Errorf("relay ports in use %d after a close, want %d", after, before-1)
	}
}

// TestBoundBeforeGrant: with edge-chooses-r the relay may bind a carrier
// (and say so) before its grant reaches the edge; the grant must not
// forget the public side, which a replay needs.
func TestBoundBeforeGrant(t *testing.T) {
	s := &Settings{CarrierPorts: confRange(61000, 61099)}
	a, err := newAgent(s, netip.MustParseAddr("100.64.0.2"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f := session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:1"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	c, err := a.take(f, session.UDP, netip.MustParseAddrPort("198.51.100.6:20001"), 7)
	if err != nil {
		t.Fatal(err)
	}
	public := netip.MustParseAddrPort("198.51.100.2:4444")
	a.Bound(&proto.CarrierBound{Flow: f, Public: public})
	if err := a.markOpen(f, &c); err != nil {
		t.Fatal(err)
	}
	if e, _ := a.flows.Get(f); e.Carrier.Public != public || e.State != flows.StateOpen {
		t.Errorf("after the grant: %+v, want open with public %v", e, public)
	}
	if snap := a.Snapshot(); len(snap) != 1 || snap[0].Public != public {
		t.Errorf("replay %+v, want the public side %v", snap, public)
	}
}
