package ports

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
)

func TestEdgePerProtocol(t *testing.T) {
	clk := newClock()
	e, err := NewEdge(EdgeConfig{Ports: Range{61000, 61001}, Quarantine: 30 * time.Second, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	e.t.start = fixedStart
	u1, _ := e.Grant(session.UDP)
	u2, _ := e.Grant(session.UDP)
	t1, err := e.Grant(session.TCP)
	if err != nil || u1 == u2 || t1 != u1 {
		t.Fatalf("udp %d %d tcp %d %v: ports are unique per protocol only", u1, u2, t1, err)
	}
	if _, err := e.Grant(session.UDP); !errors.Is(err, ErrExhausted) {
		t.Fatalf("third UDP grant of two ports: %v", err)
	}
	if err := e.Release(session.UDP, u1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Grant(session.UDP); !errors.Is(err, ErrQuarantined) {
		t.Fatalf("grant inside quarantine: %v", err)
	}
	clk.add(30 * time.Second)
	if p, err := e.Grant(session.UDP); err != nil || p != u1 {
		t.Fatalf("after quarantine: %d %v", p, err)
	}
	if err := e.Release(session.ICMP, 61000); !errors.Is(err, ErrNotGranted) {
		t.Fatalf("release never granted: %v", err)
	}
	if err := e.Claim(session.ICMP, 61000); err != nil {
		t.Fatal(err)
	}
	if err := e.Claim(session.ICMP, 60999); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("claim out of range: %v", err)
	}
	if e.InUse() != 4 {
		t.Errorf("in use %d, want 4", e.InUse())
	}
	got := e.Refused.Snapshot()
	for _, r := range []Reason{ReasonExhausted, ReasonQuarantined, ReasonNotGranted, ReasonOutOfRange} {
		if got[r] != 1 {
			t.Errorf("counter %s = %d, want 1 (%s)", r, got[r], e.Refused.String())
		}
	}
}

func TestConfigChecks(t *testing.T) {
	if _, err := NewEdge(EdgeConfig{Ports: Range{0, 10}}); err == nil {
		t.Error("port 0 accepted")
	}
	if _, err := NewEdge(EdgeConfig{Ports: Range{10, 9}}); err == nil {
		t.Error("reversed range accepted")
	}
	if _, err := NewRelay(RelayConfig{Ports: Range{1, 2}}); err == nil {
		t.Error("relay without addresses accepted")
	}
	if _, err := NewRelay(RelayConfig{Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, Ports: Range{1, 2}}); err == nil {
		t.Error("IPv6 relay address accepted")
	}
}

func BenchmarkEdgeGrantRelease(b *testing.B) {
	e, _ := NewEdge(EdgeConfig{Ports: Range{32768, 65535}, Quarantine: -1})
	for range 10000 {
		e.Grant(session.TCP)
	}
	for b.Loop() {
		p, err := e.Grant(session.TCP)
		if err != nil {
			b.Fatal(err)
		}
		e.Release(session.TCP, p)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grant+release/s")
}
