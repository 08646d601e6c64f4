package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/test/lab"
)

// wkp is a in the RFC 6052 well-known prefix 64:ff9b::/96, as the edge
// shows a carrier-path router.
func wkp(a netip.Addr) netip.Addr {
	b := netip.MustParseAddr("64:ff9b::").As16()
	v := a.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

// traceHops runs traceroute6 (UDP probes, one per hop, numeric) from ns
// to dst and returns the address that answered at each hop (invalid for
// a hop that did not answer), hop 1 first.
func traceHops(t *testing.T, ns *lab.NS, dst netip.Addr) []netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := ns.Output(ctx, "traceroute6", "-n", "-q", "1", "-w", "3", "-m", "12", dst.String())
	t.Logf("traceroute6 %v:\n%s", dst, out)
	if err != nil {
		t.Fatal(err)
	}
	var hops []netip.Addr
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, _ := netip.ParseAddr(f[1]) // "*" for no answer
		hops = append(hops, a)
	}
	return hops
}

// TestTraceroute6 (proof 5): traceroute6 from a LAN host to srv6 lists
// every hop: the edge, the carrier path's routers as 64:ff9b::<IPv4>
// (the CGN, inet, the relay itself), then the routers beyond the relay
// with their own addresses (inet's relay side), and srv6 last.
func TestTraceroute6(t *testing.T) { bothCGNs(t, testTraceroute6) }

func testTraceroute6(t *testing.T, mode lab.CGNMode) {
	u := up(t, mode)
	hops := traceHops(t, u.lab.NS(lab.LAN), lab.Srv6Addr)
	want := []netip.Addr{
		lab.SitePrefix.Addr().Next(), // the edge's LAN address
		wkp(lab.CGNEdgeAddr),
		wkp(lab.InetCGNAddr),
		wkp(lab.RelayAddr),
		lab.InetRelay6Addr,
		lab.Srv6Addr,
	}
	if len(hops) != len(want) {
		t.Fatalf("%d hops %v, want %v", len(hops), hops, want)
	}
	for i := range want {
		if hops[i] != want[i] {
			t.Errorf("hop %d: %v, want %v", i+1, hops[i], want[i])
		}
	}
	counts := section(t, u.d.relaySock, "carriers", "the relay's relayed errors", func(c struct {
		Slowpath map[string]uint64 `json:"slowpath"`
	}) bool {
		return c.Slowpath["icmp-err-relayed"] > 0 && c.Slowpath["ttl-exceeded-sent"] > 0
	})
	t.Logf("relay slow path: %v", counts.Slowpath)
}

// TestPathMTUBeyondRelay (proof 5): srvn sits behind a 1400-byte link
// beyond the relay and advertises a 1500-byte MSS, so only inet's Packet
// Too Big, relayed to the edge over the control channel, can tell the
// LAN host. A 2 MiB TCP upload completes with its bytes intact, and the
// host's route cache holds mtu 1400.
func TestPathMTUBeyondRelay(t *testing.T) { bothCGNs(t, testPathMTUBeyondRelay) }

func testPathMTUBeyondRelay(t *testing.T, mode lab.CGNMode) {
	u := up(t, mode)
	lan := u.lab.NS(lab.LAN)
	to := netip.AddrPortFrom(lab.SrvNAddr, lab.EchoPort)
	ln, err := u.lab.NS(lab.SrvN).Listen("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err == nil {
			c.Write(h.Sum(nil))
		}
	}()
	data := make([]byte, 2<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := lan.Dial(ctx, "tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if _, err := c.Write(data); err != nil {
		t.Fatalf("upload: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, sum[:]) {
		t.Fatalf("srvn's digest %x (%v), want %x", got, err, sum)
	}
	t.Logf("2 MiB lan → srvn in %v, bytes verified", time.Since(start))
	out, err := lan.Output(ctx, "ip", "-6", "route", "get", lab.SrvNAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lan: %s", bytes.TrimSpace(out))
	if !strings.Contains(string(out), "mtu 1400") {
		t.Errorf("the host's route to srvn has no mtu 1400: %s", out)
	}
	counts := section(t, u.d.edgeS, "slowpath", "the edge's injected errors", func(c map[string]uint64) bool {
		return c["icmp-err-injected"] > 0
	})
	t.Logf("edge slow path: %v", counts)
}
