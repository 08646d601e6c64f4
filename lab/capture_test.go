package lab

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// udpWith matches UDP datagrams whose payload holds token.
func udpWith(token string) func(Captured) bool {
	return func(c Captured) bool {
		u, ok := c.Packet.Layer(layers.LayerTypeUDP).(*layers.UDP)
		return ok && bytes.Contains(u.Payload, []byte(token))
	}
}

// firstEachWay keeps the first matching frame of each direction: the
// request and its echo, even when a slow machine made the client resend.
// (Match runs on the capture's one goroutine: no locking needed.)
func firstEachWay(match func(Captured) bool) func(Captured) bool {
	var seenOut, seenIn bool
	return func(c Captured) bool {
		if !match(c) {
			return false
		}
		seen := &seenIn
		if c.Outgoing {
			seen = &seenOut
		}
		if *seen {
			return false
		}
		*seen = true
		return true
	}
}

// TestCapture captures one UDP echo on both sides of the CGN and checks
// what each side saw: the site's own address before, the CGN's public
// address after, the reply coming back, and the direction of each frame.
func TestCapture(t *testing.T) {
	l := newForTest(t, Options{})
	srv, err := l.NS(Srv4).StartEcho(netip.AddrPortFrom(Srv4Addr, EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	const token = "capture-me"
	inside, err := l.NS(Edge).Capture(string(CGN), // edge's WAN
		CaptureOptions{Max: 2, Timeout: 3 * time.Second, Match: firstEachWay(udpWith(token))})
	if err != nil {
		t.Fatal(err)
	}
	outside, err := l.NS(CGN).Capture(string(Inet), // cgn's outside
		CaptureOptions{Max: 2, Timeout: 3 * time.Second, Match: firstEachWay(udpWith(token))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	local, err := l.NS(LAN).EchoUDP(ctx, srv.Addr, token)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    *Capture
		src  netip.Addr // the request's source on this link
	}{
		{"edge/cgn", inside, EdgeWANAddr},
		{"cgn/inet", outside, CGNPublic},
	} {
		pkts, err := tc.c.Wait()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(pkts) != 2 {
			t.Fatalf("%s: %d packets, want request and reply", tc.name, len(pkts))
		}
		req, rep := pkts[0], pkts[1]
		ip4 := func(c Captured) *layers.IPv4 {
			ip, _ := c.Packet.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip == nil {
				t.Fatalf("%s: not IPv4: %v", tc.name, c.Packet)
			}
			return ip
		}
		if ip := ip4(req); netip.AddrFrom4([4]byte(ip.SrcIP.To4())) != tc.src || netip.AddrFrom4([4]byte(ip.DstIP.To4())) != Srv4Addr {
			t.Errorf("%s: request %s → %s, want %s → %s", tc.name, ip.SrcIP, ip.DstIP, tc.src, Srv4Addr)
		}
		if ip := ip4(rep); netip.AddrFrom4([4]byte(ip.DstIP.To4())) != tc.src {
			t.Errorf("%s: reply to %s, want %s", tc.name, ip.DstIP, tc.src)
		}
		if !req.Outgoing || rep.Outgoing {
			t.Errorf("%s: directions request outgoing=%v reply outgoing=%v", tc.name, req.Outgoing, rep.Outgoing)
		}
		u := req.Packet.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if u.DstPort != EchoPort || u.SrcPort != layers.UDPPort(local.Port()) {
			t.Errorf("%s: ports %d → %d, want %d → %d (preserve mode)", tc.name, u.SrcPort, u.DstPort, local.Port(), EchoPort)
		}
	}
}

// TestCaptureBounds checks that a capture ends on its timeout when nothing
// matches, and at once on Stop.
func TestCaptureBounds(t *testing.T) {
	l := newForTest(t, Options{})
	c, err := l.NS(Edge).Capture(string(LAN), CaptureOptions{Timeout: 300 * time.Millisecond, Match: udpWith("never sent")})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pkts, err := c.Wait()
	if err != nil || len(pkts) != 0 {
		t.Errorf("got %d packets, %v; want none", len(pkts), err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("capture with 300 ms timeout took %v", d)
	}
	c, err = l.NS(Edge).Capture(string(LAN), CaptureOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	c.Stop()
	if _, err := c.Wait(); err != nil {
		t.Errorf("after Stop: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if _, err := l.NS(Edge).Capture("no-such-link", CaptureOptions{}); err == nil {
		t.Error("capture on a missing interface did not fail")
	}
}

// TestFullSizeUDP sends 1500-byte IPv4 packets with DF through both NATs,
// checks on the far side of the CGN that they cross whole, and that one
// byte more is refused rather than fragmented.
func TestFullSizeUDP(t *testing.T) {
	l := newForTest(t, Options{})
	srv, err := l.NS(Srv4).StartEcho(netip.AddrPortFrom(Srv4Addr, EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	const token = "full-size"
	capt, err := l.NS(Inet).Capture(string(CGN), CaptureOptions{Max: 2, Timeout: 3 * time.Second, Match: firstEachWay(udpWith(token))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := l.NS(LAN).EchoUDPPacket(ctx, srv.Addr, token, MTU); err != nil {
		t.Fatalf("1500-byte echo: %v", err)
	}
	pkts, err := capt.Wait()
	if err != nil || len(pkts) != 2 {
		t.Fatalf("captured %d packets (%v), want request and reply", len(pkts), err)
	}
	for i, p := range pkts {
		ip, ok := p.Packet.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			t.Fatalf("packet %d is not IPv4", i)
		}
		if ip.Length != MTU || ip.Flags&layers.IPv4DontFragment == 0 || ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			t.Errorf("packet %d: length %d flags %v offset %d, want one whole %d-byte DF packet", i, ip.Length, ip.Flags, ip.FragOffset, MTU)
		}
	}
	_, err = l.NS(LAN).EchoUDPPacket(ctx, srv.Addr, token+"-too-big", MTU+1)
	if err == nil || !strings.Contains(err.Error(), "message too long") {
		t.Errorf("1501-byte packet with DF: %v, want message too long", err)
	}
}
