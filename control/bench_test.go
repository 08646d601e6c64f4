package control

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// Benchmarks of the channel over loopback. Figures are printed with
// b.ReportMetric; nothing asserts a timing. Run with
//
//	go test -run XXX -bench 'FlowOpen|Session' -benchtime 3000x ./control
//	go test -run XXX -bench RestartStorm -benchtime 3x ./control

func benchOpen(b *testing.B, c *Client, i int) {
	if _, err := openFlow(context.Background(), c, nil, testFlow("home-1", i%60000), i); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFlowOpenSerial: one edge, one open at a time (each waits for
// its grant): the round trip bound.
func BenchmarkFlowOpenSerial(b *testing.B) {
	p := newPKI(b)
	srv := startRelay(b, p, newFakeRelay(), "")
	c := startEdge(b, p, "home-1", srv.Addr(), newFakeEdge())
	waitConnected(b, c)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		benchOpen(b, c, i)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "opens/s")
}

// BenchmarkFlowOpenPipelined: one edge, 64 opens in flight on its one
// connection, as when many LAN hosts open flows at once.
func BenchmarkFlowOpenPipelined(b *testing.B) {
	p := newPKI(b)
	srv := startRelay(b, p, newFakeRelay(), "")
	c := startEdge(b, p, "home-1", srv.Addr(), newFakeEdge())
	waitConnected(b, c)
	var n atomic.Int64
	b.SetParallelism(32) // × GOMAXPROCS goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchOpen(b, c, int(n.Add(1)))
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "opens/s")
}

// BenchmarkFlowOpen100Edges: 100 edges, each with its own connection and
// session, opening flows concurrently at one relay.
func BenchmarkFlowOpen100Edges(b *testing.B) {
	p := newPKI(b)
	srv := startRelay(b, p, newFakeRelay(), "")
	const edges = 100
	clients := make([]*Client, edges)
	for i := range clients {
		clients[i] = startEdge(b, p, fmt.Sprintf("site-%d", i), srv.Addr(), newFakeEdge())
	}
	for _, c := range clients {
		waitConnected(b, c)
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for e, c := range clients {
		site := fmt.Sprintf("site-%d", e)
		wg.Go(func() {
			for i := e; i < b.N; i += edges {
				if _, err := openFlow(context.Background(), c, nil, testFlow(site, i%60000), i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "opens/s")
}

// BenchmarkFlowOpenLatency measures what a flow open adds: the median and
// 99th percentile of serial opens, against the in-run baseline of a bare
// QUIC stream echo of the same size between the same two sockets' kind.
func BenchmarkFlowOpenLatency(b *testing.B) {
	p := newPKI(b)
	srv := startRelay(b, p, newFakeRelay(), "")
	c := startEdge(b, p, "home-1", srv.Addr(), newFakeEdge())
	waitConnected(b, c)
	echo := quicEcho(b, p)
	msg := make([]byte, proto.HeaderLen+(&proto.FlowOpen{}).Length())
	reply := make([]byte, proto.HeaderLen+(&proto.FlowGrant{}).Length())
	n := max(b.N, 200)
	base := make([]time.Duration, n)
	open := make([]time.Duration, n)
	b.ResetTimer()
	for i := range n {
		t0 := time.Now()
		if _, err := echo.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(echo, reply); err != nil {
			b.Fatal(err)
		}
		base[i] = time.Since(t0)
		t0 = time.Now()
		benchOpen(b, c, i)
		open[i] = time.Since(t0)
	}
	b.StopTimer()
	slices.Sort(base)
	slices.Sort(open)
	q := func(d []time.Duration, f float64) float64 {
		return float64(d[int(f*float64(len(d)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(q(open, 0.5), "open-p50-µs")
	b.ReportMetric(q(open, 0.99), "open-p99-µs")
	b.ReportMetric(q(base, 0.5), "echo-p50-µs")
	b.ReportMetric(q(base, 0.99), "echo-p99-µs")
	b.ReportMetric(q(open, 0.5)/q(base, 0.5), "p50-ratio")
	b.ReportMetric(q(open, 0.99)/q(base, 0.99), "p99-ratio")
}

// quicEcho is the baseline: a QUIC stream to a server that echoes the
// first len(reply) bytes of every message, over loopback, with the same
// TLS setup.
func quicEcho(b *testing.B, p *testPKI) *quic.Stream {
	tlsS := pki.ServerConfig(p.relay.TLS(), p.ca.Pool(), pki.ServerOptions{NextProtos: []string{"echo"}})
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsS, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		str, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		in := make([]byte, proto.HeaderLen+(&proto.FlowOpen{}).Length())
		out := make([]byte, proto.HeaderLen+(&proto.FlowGrant{}).Length())
		for {
			if _, err := io.ReadFull(str, in); err != nil {
				return
			}
			if _, err := str.Write(out); err != nil {
				return
			}
		}
	}()
	tlsC := pki.ClientConfig(p.edge(b, "echo"), p.ca.Pool(), pki.ClientOptions{ServerName: "relay.test", NextProtos: []string{"echo"}})
	conn, err := quic.DialAddr(context.Background(), ln.Addr().String(), tlsC, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.CloseWithError(0, "") })
	str, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return str
}

// BenchmarkSessionMemory: heap per session with both ends in this process
// (edge Client and relay Session, QUIC state included), from 100 edges.
// The channel keeps no per-flow state once a grant is answered; the
// relay's flow table belongs to the relay agent.
func BenchmarkSessionMemory(b *testing.B) {
	p := newPKI(b)
	srv := startRelay(b, p, newFakeRelay(), "")
	ids := make([]tls.Certificate, 100)
	for i := range ids {
		ids[i] = p.edge(b, fmt.Sprintf("site-%d", i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range ids {
		c := startEdge(b, p, fmt.Sprintf("site-%d", i), srv.Addr(), newFakeEdge(), func(c *ClientConfig) { c.Identity = ids[i] })
		waitConnected(b, c)
	}
	for range b.N {
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(ids)), "heap-B/session-pair")
}

// BenchmarkRestartStorm: 100 edges with 100 flows each lose their relay
// to a graceful restart; the figure is the time until every edge has
// reconnected and its flows are replayed into the new relay.
func BenchmarkRestartStorm(b *testing.B) {
	p := newPKI(b)
	const edges, flows = 100, 100
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	srv := startRelay(b, p, newFakeRelay(), addr)
	for e := range edges {
		site := fmt.Sprintf("site-%d", e)
		edge := newFakeEdge()
		for i := range flows {
			edge.install(proto.ReplayEntry{Flow: testFlow(site, i), CarrierProto: 6, EdgePort: uint16(61000 + i), Relay: relayAddr(uint16(20000 + i))})
		}
		waitConnected(b, startEdge(b, p, site, srv.Addr(), edge))
	}
	var total time.Duration
	for range b.N {
		relay := newFakeRelay()
		srv.Close()
		srv.tr.Conn.Close()
		start := time.Now()
		srv = startRelay(b, p, relay, addr)
		for range edges {
			select {
			case <-relay.replays:
			case <-time.After(30 * time.Second):
				b.Fatalf("only some edges came back: %v", srv.Counters().Snapshot())
			}
		}
		total += time.Since(start)
		if n := relay.nflows(); n != edges*flows {
			b.Fatalf("%d flows replayed, want %d", n, edges*flows)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N)*1e3, "ms-to-all-replayed")
}
