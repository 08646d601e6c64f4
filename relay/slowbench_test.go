package relay

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// Benchmarks of the relay's slow path without a datapath. To compare in
// one run with the code before the flows table became the relay's
// registry, this file builds there with c.flows[f] for c.flows.get(f)
// and len(c.flows) for c.flows.len(), and bench_activity_test.go with
// that code's flowActivity.

const benchEdges = 100

// benchCarriers is a relay with benchEdges sites, each behind a CGNAT
// address of its own, and a peer for each.
func benchCarriers(b testing.TB) (*agent, []edgePeer) {
	s := &Settings{
		Addresses:    []netip.Addr{netip.MustParseAddr("198.51.100.6")},
		CarrierPorts: config.PortRange{First: 1024, Last: 65535},
		Timers:       config.Timers{UDP: 5 * time.Minute, TCPEstablished: 124 * time.Minute, TCPTransitory: 4 * time.Minute, ICMP: time.Minute},
	}
	var peers []edgePeer
	for i := range benchEdges {
		site := fmt.Sprintf("site-%d", i)
		s.Sites = append(s.Sites, Site{ID: site, Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x10, byte(i)}), 56), MaxFlows: 60000})
		peers = append(peers, edgePeer{site, uint64(i + 1), netip.AddrFrom4([4]byte{100, 64, byte(i), 1})})
	}
	c, err := newAgent(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return c, peers
}

// benchFlow is flow n of edge e.
func benchFlow(e, n int) session.Flow {
	return session.Flow{Proto: session.UDP,
		Site:   netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x10, byte(e), 15: 2}), uint16(1024+n%60000)),
		Remote: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:6::2"), uint16(1+n/60000))}
}

// BenchmarkOpenFlood100Edges: benchEdges edges open new flows at once,
// as fast as the relay takes them, each closing its flows 512 opens
// later (a steady flood): what one FlowOpen costs the relay's slow path
// (lease, books, expiry) and how it scales across the edges' goroutines.
func BenchmarkOpenFlood100Edges(b *testing.B) {
	c, peers := benchCarriers(b)
	const window = 512
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for e, p := range peers {
		wg.Go(func() {
			for n := 0; e+n*benchEdges < b.N; n++ {
				f := benchFlow(e, n)
				g, _ := c.open(p, &proto.FlowOpen{Flow: f, CarrierProto: session.UDP, EdgePort: uint16(1024 + n%60000), Token: 7, LifetimeSec: 300})
				if g.Result != proto.CodeOK {
					b.Error(g.Result)
					return
				}
				if n >= window {
					old := benchFlow(e, n-window)
					c.flows.mu.Lock()
					if k := c.flows.get(old); k != nil {
						c.remove(old, k)
					}
					c.flows.mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "opens/s")
}

// bindAll gives the relay n bound UDP flows, spread over the edges.
func bindAll(t testing.TB, c *agent, peers []edgePeer, n int) {
	for i := range n {
		e, j := i%benchEdges, i/benchEdges
		f := benchFlow(e, j)
		g, _ := c.open(peers[e], &proto.FlowOpen{Flow: f, CarrierProto: session.UDP, EdgePort: uint16(1024 + j%60000), Token: 7, LifetimeSec: 300})
		if g.Result != proto.CodeOK {
			t.Fatal(g.Result)
		}
		c.flows.mu.Lock()
		k := c.flows.get(f)
		k.public = netip.AddrPortFrom(peers[e].from, uint16(1024+j%60000))
		c.mapCarrier(f, k)
		c.flows.mu.Unlock()
	}
}

// TestSweepCostsNothingPerFlow: a sweep of flows none of which is due
// and whose counters did not move reads their counters and leaves them
// be: it copies no flow and allocates nothing per flow (the relay's own
// sweep before the flows table copied each twice, under the carriers'
// lock and after it: 18 MiB for 20000 flows). What it still does per
// flow is read its counters.
func TestSweepCostsNothingPerFlow(t *testing.T) {
	c, peers := benchCarriers(t)
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }
	const flows = 20_000
	bindAll(t, c, peers, flows)
	benchActivity(c)
	c.sweep() // the first look
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c.sweep()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 100<<10 {
		t.Errorf("a sweep of %d flows allocated %d KiB, want none per flow (< 100 KiB)", flows, got>>10)
	}
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	if n := c.flows.len(); n != flows {
		t.Errorf("%d flows left of %d", n, flows)
	}
}

// BenchmarkSweep200k: one expiry sweep of 200k bound flows none of which
// is due and whose counters did not move (the common case), and the
// longest wait for c.mu a goroutine locking it every 50 µs saw.
func BenchmarkSweep200k(b *testing.B) {
	c, peers := benchCarriers(b)
	now := time.Unix(1e9, 0) // stands still: no flow comes due
	c.now = func() time.Time { return now }
	const flows = 200_000
	bindAll(b, c, peers, flows)
	benchActivity(c)
	c.sweep() // the first look
	stop := make(chan struct{})
	var worst time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Microsecond):
			}
			t := time.Now()
			c.flows.mu.Lock()
			worst = max(worst, time.Since(t))
			c.flows.mu.Unlock()
		}
	})
	b.ResetTimer()
	for b.Loop() {
		c.sweep()
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	if n := c.flows.len(); n != flows {
		b.Fatalf("%d flows left of %d", n, flows)
	}
	b.ReportMetric(float64(worst.Microseconds()), "µs-max-lock-wait")
}
