package cgnat

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/portmap/pcp"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

// upPortMapping is a lab with the relay alone (no edge: the subscriber
// is the relay's), its CGNAT filtering address-and-port-dependent (so
// only an explicit mapping lets srv4 in first) and port mapping on.
func upPortMapping(t *testing.T) e2e.Running {
	t.Helper()
	u := e2e.Running{Lab: labtest.New(t, lab.Options{})}
	u.D = e2e.Deploy(t, lab.BuildUnmap(t))
	b, err := os.ReadFile(u.D.RelayConfig)
	if err != nil {
		t.Fatal(err)
	}
	// Deploy's relay serves PCP and NAT-PMP to subscribers already (the
	// tour's row): here with a quota of 5, and the strictest filtering.
	text := strings.Replace(string(b), "  port_mapping: {pcp: true, nat_pmp: true}\n",
		"  filtering: address-and-port-dependent\n"+
			"  port_mapping: {pcp: true, nat_pmp: true, per_subscriber: 5}\n", 1)
	if text == string(b) {
		t.Fatal("relay.yaml has no cgnat.port_mapping line to change")
	}
	if err := os.WriteFile(u.D.RelayConfig, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	u.Relay = u.D.StartRelay(t, u.Lab)
	u.D.DumpOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := u.Relay.WaitFor(ctx, "relay listening"); err != nil {
		t.Fatal(err)
	}
	return u
}

type relayPortmap struct {
	Mappings []struct{ Via, Proto, Client, Internal, External string } `json:"mappings"`
	Counts   map[string]uint64                                         `json:"counts"`
}

// TestSubscriberPortMapping: the sub host asks the relay by PCP (our
// client) and by NAT-PMP (github.com/jackpal/go-nat-pmp, through
// test/mapclient) for a TCP and a UDP port each; each is a port of the
// block the request got it (logged), on the pool address; srv4, which
// the subscriber never sent to, reaches its echo servers there through
// address-and-port-dependent filtering and exchanges data; `unmap
// status` lists the four. A PCP request for another host's address is
// refused (NOT_AUTHORIZED); PCP and NAT-PMP from srv4 to the relay's
// addresses get no answer and reach no server. The relay restarts: the
// sub host hears PCP's ANNOUNCE, the mappings are restored and still
// reach the sub host, and deleting them (PCP with the same nonce,
// NAT-PMP lifetime 0) closes them to srv4.
func TestSubscriberPortMapping(t *testing.T) {
	u := upPortMapping(t)
	l := u.Lab
	sub, srv4 := l.NS(lab.Sub), l.NS(lab.Srv4)
	pool := lab.SubPool4.Addr()
	const pcpPort, natPort = 7001, 7002
	for _, p := range []uint16{pcpPort, natPort} {
		echo, err := sub.StartEcho(netip.AddrPortFrom(netip.IPv4Unspecified(), p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { echo.Close() })
	}
	gw := netip.AddrPortFrom(lab.RelaySubAddr, pcp.ServerPort)
	var c *pcp.Client
	if err := sub.Do(func() (err error) { c, err = pcp.Dial(gw); return err }); err != nil {
		t.Fatal(err)
	}
	c.Retry = 250 * time.Millisecond
	defer c.Conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	nonce := pcp.NewNonce()
	ext := map[string]netip.AddrPort{}
	var asked time.Time
	for _, proto := range []uint8{6, 17} {
		asked = time.Now()
		m, err := c.Map(ctx, proto, pcpPort, pcpPort, 600, nonce, nil)
		if err != nil {
			t.Fatalf("PCP MAP %d: %v", proto, err)
		}
		ext["pcp"+strconv.Itoa(int(proto))] = netip.AddrPortFrom(m.Map.ExternalAddr, m.Map.ExternalPort)
	}
	// The figure: PCP request to srv4's first UDP exchange through the
	// new mapping, against an exchange through it once it is there.
	exchange := func(token string) time.Duration {
		t.Helper()
		start := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		if _, err := srv4.EchoUDP(cctx, ext["pcp17"], token); err != nil {
			t.Fatalf("srv4 to the PCP UDP mapping %v: %v", ext["pcp17"], err)
		}
		return time.Since(start)
	}
	exchange("first")
	toFirst := time.Since(asked)
	base := exchange("again")
	if toFirst > time.Second {
		t.Errorf("PCP request to srv4's first exchange: %v, want under 1 s (no retry needed)", toFirst)
	}
	t.Logf("PCP request to srv4's first UDP exchange: %v; an exchange through the mapping after: %v (%.2fx)", toFirst, base, float64(toFirst)/float64(base))
	bin := lab.BuildBinary(t, "./test/mapclient")
	for _, proto := range []string{"tcp", "udp"} {
		out, err := sub.Output(ctx, bin, "natpmp-map", lab.RelaySubAddr.String(), proto, strconv.Itoa(natPort), "0", "600")
		var v map[string]any
		if err != nil || json.Unmarshal(out, &v) != nil {
			t.Fatalf("NAT-PMP %s: %v\n%s", proto, err, out)
		}
		ext["natpmp-"+proto] = netip.AddrPortFrom(pool, uint16(v["external"].(float64)))
	}
	out, err := sub.Output(ctx, bin, "natpmp-addr", lab.RelaySubAddr.String())
	if err != nil || !strings.Contains(string(out), pool.String()) {
		t.Errorf("NAT-PMP external address: %v %s, want %v", err, out, pool)
	}
	first, last := e2e.PortRange(t, lab.SubPorts)
	for name, e := range ext {
		if e.Addr() != pool || e.Port() < first || e.Port() > last {
			t.Errorf("%s mapped at %v, want a block port of %v", name, e, pool)
		}
	}
	blog, _ := os.ReadFile(u.D.CGNATLog)
	if n := strings.Count(string(blog), `"event":"grant"`); n != 1 || !strings.Contains(string(blog), lab.SubAddr.String()) {
		t.Errorf("block log: %d grants for the sub host, want the one its first request got:\n%s", n, blog)
	}
	reach := func(what string, want bool) {
		t.Helper()
		for name, e := range ext {
			d := 10 * time.Second
			if !want {
				d = 2 * time.Second
			}
			cctx, ccancel := context.WithTimeout(ctx, d)
			var err error
			if strings.HasSuffix(name, "6") || strings.HasSuffix(name, "tcp") {
				_, err = srv4.EchoTCP(cctx, e, what+"-"+name)
			} else {
				_, err = srv4.EchoUDP(cctx, e, what+"-"+name)
			}
			ccancel()
			if want && err != nil {
				t.Errorf("%s: srv4 to %s's %v: %v", what, name, e, err)
			}
			if !want && err == nil {
				t.Errorf("%s: srv4 still reaches %s's %v", what, name, e)
			}
		}
	}
	reach("mapped", true)
	e2e.Section(t, u.D.RelaySock, "portmap", "the relay's four port mappings", func(s relayPortmap) bool {
		return len(s.Mappings) == 4 && s.Counts["granted"] == 4
	})

	// Another host's address: refused.
	if _, err := c.Map(ctx, 6, 7003, 0, 600, nonce, func(m *pcp.Message) { m.ThirdParty = netip.MustParseAddr("100.64.100.3") }); !isResult(err, pcp.NotAuthorized) {
		t.Errorf("PCP for another host: %v, want NOT_AUTHORIZED", err)
	}
	// From the Internet side: no answer, at the pool or the relay's address.
	for _, to := range []netip.Addr{pool, lab.RelayAddr} {
		var ic *pcp.Client
		if err := srv4.Do(func() (err error) { ic, err = pcp.Dial(netip.AddrPortFrom(to, pcp.ServerPort)); return err }); err != nil {
			t.Fatal(err)
		}
		ic.Retry = 250 * time.Millisecond
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := ic.Do(actx, &pcp.Message{Opcode: pcp.OpAnnounce})
		acancel()
		ic.Conn.Close()
		if err == nil {
			t.Errorf("srv4 to %v: answered %+v", to, m)
		}
	}
	before := e2e.Section(t, u.D.RelaySock, "portmap", "the counts", func(relayPortmap) bool { return true })
	if n := before.Counts["requests-pcp"]; n != 3 {
		t.Errorf("the server counted %d PCP requests, want the sub host's 3", n)
	}

	// A restart: ANNOUNCE, the mappings back, still reaching the host.
	var ann *net.UDPConn
	if err := sub.Do(func() (err error) { ann, err = net.ListenUDP("udp4", &net.UDPAddr{Port: pcp.ClientPort}); return err }); err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	if err := u.Relay.Stop(); err != nil && !e2e.IsSIGTERM(err) {
		t.Fatalf("relay stop: %v", err)
	}
	u.Relay = u.D.StartRelay(t, l)
	if _, err := u.Relay.WaitFor(ctx, "relay listening"); err != nil {
		t.Fatal(err)
	}
	_ = ann.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, err := ann.Read(buf)
		if err != nil {
			t.Errorf("no PCP ANNOUNCE after the restart: %v", err)
			break
		}
		if m, err := pcp.ParseResponse(buf[:n]); err == nil && m.Opcode == pcp.OpAnnounce && m.Result == pcp.Success {
			break
		}
	}
	e2e.Section(t, u.D.RelaySock, "portmap", "the mappings restored", func(s relayPortmap) bool {
		return len(s.Mappings) == 4 && s.Counts["restored"] == 4
	})
	reach("restored", true)

	// Deleted: closed to srv4.
	for _, proto := range []uint8{6, 17} {
		if _, err := c.Map(ctx, proto, pcpPort, 0, 0, nonce, nil); err != nil {
			t.Fatalf("PCP delete %d: %v", proto, err)
		}
	}
	for _, proto := range []string{"tcp", "udp"} {
		if out, err := sub.Output(ctx, bin, "natpmp-map", lab.RelaySubAddr.String(), proto, strconv.Itoa(natPort), "0", "0"); err != nil {
			t.Fatalf("NAT-PMP delete %s: %v\n%s", proto, err, out)
		}
	}
	e2e.Section(t, u.D.RelaySock, "portmap", "no mappings", func(s relayPortmap) bool { return len(s.Mappings) == 0 })
	reach("deleted", false)
}

func isResult(err error, r pcp.Result) bool {
	var e *pcp.Error
	return errors.As(err, &e) && e.Result == r
}
