package edge

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/handshake"
	"github.com/unmap-dev/unmap/session/ports"
)

// benchAgent is an agent without a datapath over a wide carrier range
// whose ports come back at once (no quarantine), for loops that open
// and close flows.
func benchAgent(b *testing.B) *agent {
	b.Helper()
	a := testAgent(b, "32768-65535")
	var err error
	if a.ports, err = ports.NewEdge(ports.EdgeConfig{Ports: ports.Range{First: 32768, Last: 65535}, Quarantine: -1}); err != nil {
		b.Fatal(err)
	}
	a.inject = func([]byte) error { return nil }
	return a
}

// openClose takes a carrier port and a table entry for a new flow and
// drops them again, as each outbound flow's life does at the edge.
func openClose(b *testing.B, a *agent, next *atomic.Uint64) func(*testing.PB) {
	return func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			f := session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::20"), uint16(i)),
				Remote: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:7::1"), uint16(i>>16)+1)}
			c, err := a.take(f, session.UDP, hsRelay, proto.BindToken(i))
			if err != nil {
				b.Fatal(err)
			}
			a.drop(f, c)
		}
	}
}

// BenchmarkOpenClose: flows opened and closed from as many goroutines as
// GOMAXPROCS (the misses of many LAN hosts, the relay's closes).
func BenchmarkOpenClose(b *testing.B) {
	a := benchAgent(b)
	var next atomic.Uint64
	b.RunParallel(openClose(b, a, &next))
}

// BenchmarkReplay: the replay of a site with 65536 flows (Snapshot).
func BenchmarkReplay(b *testing.B) {
	a := benchAgent(b)
	replayFlows(b, a, 65536)
	for b.Loop() {
		if len(a.Snapshot()) != 65536 {
			b.Fatal("short replay")
		}
	}
}

// BenchmarkOpenCloseDuringReplay is BenchmarkOpenClose while replays of
// 65536 flows run back to back (a reconnect storm): what a replay holds
// up of the flows that open meanwhile.
func BenchmarkOpenCloseDuringReplay(b *testing.B) {
	a := benchAgent(b)
	replayFlows(b, a, 65536)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			a.Snapshot()
		}
	}()
	var next atomic.Uint64
	b.ResetTimer()
	b.RunParallel(openClose(b, a, &next))
	b.StopTimer()
	cancel()
	<-done
}

// BenchmarkHandshakeStep: the relay's SYN/ACK steps of inbound TCP
// handshakes (a stray one, looked up by carrier port and counted), from
// as many goroutines as GOMAXPROCS.
func BenchmarkHandshakeStep(b *testing.B) {
	a := benchAgent(b)
	stray := func() []byte {
		p, err := handshake.Packet(hsRelay.Addr(), hsWAN, handshake.Segment{SrcPort: hsRelay.Port(), DstPort: 9, Seq: 1, Ack: 2, Flags: handshake.SYN | handshake.ACK})
		if err != nil {
			b.Fatal(err)
		}
		return append([]byte{12: 0x08, 13: 0x00}, p...)
	}()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if a.handshakeWAN(stray) {
				b.Fatal("a segment to no handshake taken")
			}
		}
	})
}
