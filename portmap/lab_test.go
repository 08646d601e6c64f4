package portmap_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/portmap"
	"github.com/unmap-dev/unmap/portmap/natpmp"
	"github.com/unmap-dev/unmap/portmap/pcp"
	"github.com/unmap-dev/unmap/test/labtest"
)

// Addresses the test adds to the lab's lan—edge link for PCP over IPv6
// and IGDv2 pinholes (the lab has link-local IPv6 only there).
var (
	edgeLAN6 = netip.MustParseAddr("2001:db8:5::1")
	host6    = lab.SiteHost6Addr
)

// labServer runs the server in the lab's edge namespace on its "lan"
// interface, with an in-memory backend of the site's public IPv4.
func labServer(t *testing.T, l *lab.Lab, pol portmap.Policy) (*portmap.Server, *portmap.MemBackend) {
	t.Helper()
	be := portmap.NewMemBackend(lab.SitePublic4, 1024, 65535)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tlog{t}, nil))
	}
	srv := portmap.NewServer(portmap.Config{Interface: string(lab.LAN), PCP: true, NATPMP: true, UPnP: true, Name: "lab", Log: log},
		portmap.NewTable(pol, be, log))
	if err := l.NS(lab.Edge).Do(srv.Listen); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv, be
}

type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// mapclient runs the third-party clients' driver in the LAN host's
// namespace and decodes its JSON answer.
func mapclient(t *testing.T, ns *lab.NS, bin string, args ...string) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.Output(ctx, bin, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", out, err)
	}
	return v, nil
}

// TestClients runs the protocols against clients nobody here wrote —
// go-nat-pmp and goupnp's IGD discovery (SSDP multicast on the lab's LAN)
// and SOAP calls — and our PCP client, from the lab's LAN host to the
// server on the edge's LAN interface; each grant must reach the backend
// as the mapping asked for. It also checks the unsolicited ANNOUNCE and
// NAT-PMP address announcement at start.
func TestClients(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	bin := lab.BuildBinary(t, "./test/mapclient")
	lanNS := l.NS(lab.LAN)
	for _, a := range []struct {
		ns     *lab.NS
		ifname string
		addr   netip.Addr
	}{{l.NS(lab.Edge), string(lab.LAN), edgeLAN6}, {lanNS, string(lab.Edge), host6}} {
		if err := a.ns.AddAddr(a.ifname, netip.PrefixFrom(a.addr, 64)); err != nil {
			t.Fatal(err)
		}
	}
	// The LAN host listens for announcements before the server starts.
	var ann *net.UDPConn
	if err := lanNS.Do(func() (err error) {
		ann, err = net.ListenUDP("udp4", &net.UDPAddr{Port: pcp.ClientPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	srv, be := labServer(t, l, portmap.Policy{})
	checkAnnouncements(t, ann)

	gw := lab.EdgeLANAddr.String()
	host := lab.LANAddr
	// NAT-PMP with go-nat-pmp.
	if v, err := mapclient(t, lanNS, bin, "natpmp-addr", gw); err != nil || v["external"] != lab.SitePublic4.String() {
		t.Errorf("go-nat-pmp external address: %v %v", v, err)
	}
	if v, err := mapclient(t, lanNS, bin, "natpmp-map", gw, "tcp", "8080", "8080", "600"); err != nil || v["external"] != 8080.0 || v["lifetime"] != 600.0 {
		t.Errorf("go-nat-pmp map: %v %v", v, err)
	}
	wantLive(t, be, portmap.TCP, 8080, netip.AddrPortFrom(host, 8080))

	// UPnP IGD with goupnp: SSDP discovery, description, SOAP.
	if v, err := mapclient(t, lanNS, bin, "upnp-addr"); err != nil || v["external"] != lab.SitePublic4.String() {
		t.Errorf("goupnp GetExternalIPAddress: %v %v", v, err)
	}
	if v, err := mapclient(t, lanNS, bin, "upnp-map", "udp", "9000", "9000", "600"); err != nil || v["internal_client"] != host.String() {
		t.Errorf("goupnp AddPortMapping: %v %v", v, err)
	}
	wantLive(t, be, portmap.UDP, 9000, netip.AddrPortFrom(host, 9000))
	if v, err := mapclient(t, lanNS, bin, "upnp-get", "udp", "9000"); err != nil || v["internal_client"] != host.String() || v["internal"] != 9000.0 {
		t.Errorf("goupnp GetSpecificPortMappingEntry: %v %v", v, err)
	}
	// 8080/TCP is NAT-PMP's mapping of 8080: AddAnyPortMapping of
	// another internal port gets the nearest free one.
	if v, err := mapclient(t, lanNS, bin, "upnp-any", "tcp", "8081", "8080", "600"); err != nil || v["external"] == 8080.0 {
		t.Errorf("goupnp AddAnyPortMapping: %v %v", v, err)
	}
	if _, err := mapclient(t, lanNS, bin, "upnp-delete", "udp", "9000"); err != nil {
		t.Errorf("goupnp DeletePortMapping: %v", err)
	}
	if _, ok := be.Lookup(portmap.UDP, netip.AddrPortFrom(lab.SitePublic4, 9000), netip.AddrPortFrom(lab.Srv4Addr, 1)); ok {
		t.Error("DeletePortMapping left the mapping in the backend")
	}
	// IGDv2 pinhole, asked over IPv6 for the host's own address.
	loc := fmt.Sprintf("http://[%s]:%d/igd2.xml", edgeLAN6, portmap.DefaultHTTPPort)
	if _, err := mapclient(t, lanNS, bin, "upnp-pinhole", loc, "tcp", host6.String(), "443", "600"); err != nil {
		t.Errorf("goupnp AddPinhole: %v", err)
	}
	wantLive(t, be, portmap.TCP, 443, netip.AddrPortFrom(host6, 443))

	// PCP with our client, IPv4 and IPv6.
	for _, gw := range []netip.Addr{lab.EdgeLANAddr, edgeLAN6} {
		c := dialPCP(t, lanNS, netip.AddrPortFrom(gw, pcp.ServerPort))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := c.Map(ctx, 17, 5000, 5000, 120, pcp.NewNonce(), nil)
		cancel()
		if err != nil {
			t.Errorf("PCP MAP via %v: %v", gw, err)
			continue
		}
		ext := netip.AddrPortFrom(m.Map.ExternalAddr, m.Map.ExternalPort)
		wantLive(t, be, portmap.UDP, ext.Port(), netip.AddrPortFrom(c.Self, 5000))
		if gw.Is4() && ext != netip.AddrPortFrom(lab.SitePublic4, 5000) || gw.Is6() && ext != netip.AddrPortFrom(host6, 5000) {
			t.Errorf("PCP MAP via %v: external %v", gw, ext)
		}
	}
	if c := srv.Table().Counts(); c["granted"] != 6 || c["requests-upnp"] == 0 || c["requests-pcp"] != 2 {
		t.Errorf("counts %v", c)
	}
}

func dialPCP(t *testing.T, ns *lab.NS, server netip.AddrPort) *pcp.Client {
	var c *pcp.Client
	if err := ns.Do(func() (err error) {
		c, err = pcp.Dial(server)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.Retry = 250 * time.Millisecond
	t.Cleanup(func() { c.Conn.Close() })
	return c
}

func wantLive(t *testing.T, be *portmap.MemBackend, proto portmap.Proto, port uint16, internal netip.AddrPort) {
	t.Helper()
	ext := netip.AddrPortFrom(lab.SitePublic4, port)
	if internal.Addr().Is6() {
		ext = internal
	}
	m, ok := be.Lookup(proto, ext, netip.AddrPortFrom(lab.Srv4Addr, 1))
	if !ok || m.Internal != internal {
		t.Errorf("backend: %v %v → %+v (found %v), want to %v", proto, ext, m, ok, internal)
	}
}

// checkAnnouncements waits for the server's start-up announcements: a
// PCP ANNOUNCE response and a NAT-PMP external address, both multicast
// to the LAN's all-hosts group.
func checkAnnouncements(t *testing.T, c *net.UDPConn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var sawPCP, sawNATPMP bool
	buf := make([]byte, 1500)
	for !sawPCP || !sawNATPMP {
		n, err := c.Read(buf)
		if err != nil {
			t.Errorf("announcements: PCP %v, NAT-PMP %v: %v", sawPCP, sawNATPMP, err)
			return
		}
		if m, err := pcp.ParseResponse(buf[:n]); err == nil && m.Opcode == pcp.OpAnnounce && m.Result == pcp.Success {
			sawPCP = true
		}
		if r, err := natpmp.ParseResponse(buf[:n]); err == nil && r.Opcode == natpmp.OpExternalAddress && r.External == lab.SitePublic4 {
			sawNATPMP = true
		}
	}
}

// TestNotOnWAN proves the server answers nothing that arrives on another
// interface than the LAN's, even addressed to the edge's own addresses
// and ports: PCP and NAT-PMP from the CGN side (the edge's WAN) to its WAN
// address and to its LAN address, a unicast M-SEARCH, and the UPnP
// control port; the edge's kernel refuses each (port unreachable, a TCP
// reset) and the server counts no request. The same requests from the
// LAN are answered, so the refusal is the interface's.
func TestNotOnWAN(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	srv, _ := labServer(t, l, portmap.Policy{})
	// The CGN routes the site's LAN to the edge's WAN side, so a request
	// for the LAN address really arrives there (it has no such route).
	if err := l.NS(lab.CGN).Netlink().RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: lab.LANNet.Addr().AsSlice(), Mask: net.CIDRMask(lab.LANNet.Bits(), 32)},
		Gw: lab.EdgeWANAddr.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	ask := func(ns *lab.NS, to netip.AddrPort, req []byte) error {
		var c *net.UDPConn
		if err := ns.Do(func() (err error) {
			c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
			return err
		}); err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write(req); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(make([]byte, 1500))
		return err
	}
	pcpReq := (&pcp.Message{Opcode: pcp.OpMap, Lifetime: 60, Client: lab.CGNEdgeAddr, Map: pcp.Map{Protocol: 6, InternalPort: 22}}).Append(nil)
	natReq := (&natpmp.Request{Opcode: natpmp.OpMapTCP, InternalPort: 22, Lifetime: 60}).Append(nil)
	search := []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n")
	for _, c := range []struct {
		name string
		to   netip.AddrPort
		req  []byte
	}{
		{"PCP", netip.AddrPortFrom(lab.EdgeWANAddr, pcp.ServerPort), pcpReq},
		{"NAT-PMP", netip.AddrPortFrom(lab.EdgeWANAddr, pcp.ServerPort), natReq},
		{"M-SEARCH", netip.AddrPortFrom(lab.EdgeWANAddr, 1900), search},
		// The LAN address, routed to the edge from its WAN side.
		{"PCP to the LAN address", netip.AddrPortFrom(lab.EdgeLANAddr, pcp.ServerPort), pcpReq},
	} {
		// The edge's kernel answers port unreachable: the request got
		// there, and no socket of the server took it.
		if err := ask(l.NS(lab.CGN), c.to, c.req); !errors.Is(err, syscall_ECONNREFUSED) {
			t.Errorf("%s from the WAN side to %v: %v, want connection refused (port unreachable)", c.name, c.to, err)
		}
	}
	if err := l.NS(lab.CGN).Do(func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(lab.EdgeWANAddr, portmap.DefaultHTTPPort).String(), time.Second)
		if err == nil {
			c.Close()
			return errors.New("UPnP control port accepted a connection from the WAN side")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if n := srv.Table().Counts()["requests-pcp"] + srv.Table().Counts()["requests-nat-pmp"]; n != 0 {
		t.Errorf("%d requests from the WAN side reached the server", n)
	}
	// The control: the same requests from the LAN host are answered.
	pcpReq = (&pcp.Message{Opcode: pcp.OpMap, Lifetime: 60, Client: lab.LANAddr, Map: pcp.Map{Protocol: 6, InternalPort: 22}}).Append(nil)
	for name, req := range map[string][]byte{"PCP": pcpReq, "NAT-PMP": natReq} {
		if err := ask(l.NS(lab.LAN), netip.AddrPortFrom(lab.EdgeLANAddr, pcp.ServerPort), req); err != nil {
			t.Errorf("%s from the LAN: %v", name, err)
		}
	}
}
