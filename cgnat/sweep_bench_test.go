package cgnat

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
	"github.com/unmap-dev/unmap/xdp"
)

// cpuTime is the process's CPU time so far, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSweep: one sweep of the agent over n mappings made by the
// real datapath (BPF_PROG_RUN), half TCP (a SYN each), half UDP, none
// idle: what the relay pays every 10 s at that many mappings. Reported
// per mapping, wall (ns/mapping) and CPU, user and system
// (cpu-ns/mapping), with the bytes and allocations a sweep; one sweep
// before the timing so buffers kept between sweeps are counted as kept.
// Uses only what the agent and the datapath offered before the batched
// reads, so the same file measures the older code.
// `go test -run '^$' -bench Sweep -benchmem ./cgnat`
func BenchmarkSweep(b *testing.B) {
	priv.Require(b)
	for _, n := range []int{200_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			a := sweepBenchAgent(b, n)
			if err := a.Sweep(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				if err := a.Sweep(); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuTime(b) - cpu0
			if got := a.mappings[0].Load() + a.mappings[1].Load(); got != int64(n) {
				b.Fatalf("the sweep counts %d mappings, want %d", got, n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/mapping")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/mapping")
		})
	}
}

// sweepBenchAgent loads a datapath for 1M mappings and makes n of them
// through it, 1000 TCP and 1000 UDP a subscriber (its blocks granted by
// the agent as its packets ask).
func sweepBenchAgent(b *testing.B, n int) *Agent {
	b.Helper()
	c := Config{Interface: "sub0", Inside: "100.64.0.0/22", Pool: "192.0.2.0/27", Ports: "32768-65535",
		BlockSize: 512, BlocksPerSubscriber: 4, Log: filepath.Join(b.TempDir(), "blocks.log")}
	s, err := c.Parse("cgnat", Relay{Interface: "ext0"})
	if err != nil {
		b.Fatal(err)
	}
	d, err := xdp.Load(xlattest.Config(xlattest.RelayAddr), xdp.Options{CGNAT: s.Datapath, CGNATMappings: 1 << 20, NoMissLimit: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	blog, err := OpenLog(s.Log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { blog.Close() })
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	a, err := NewAgent(s, d, blog, nil, clk.now)
	if err != nil {
		b.Fatal(err)
	}
	prog := d.Program(xlat.RoleRelaySub)
	out := make([]byte, 256)
	const perSub = 2000
	for i := range n {
		si, j := 10+i/perSub, i%perSub
		sub := netip.AddrFrom4([4]byte{100, 64, byte(si >> 8), byte(si)})
		sp := xlattest.Spec{Proto: 17, Src: sub, SPort: uint16(10000 + j/2), Dst: xlattest.Remote4, DPort: 53, Payload: []byte("x")}
		if j%2 == 1 {
			sp = xlattest.Spec{Proto: 6, Src: sub, SPort: uint16(10000 + j/2), Dst: xlattest.Remote4, DPort: 443, TCPFlags: 0x02}
		}
		pkt := xlattest.Build(sp)
		for try := 0; ; try++ {
			ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, DataOut: out})
			if err != nil {
				b.Fatal(err)
			}
			if xlat.Verdict(ret) == xlat.Pass {
				break
			}
			if try > 0 {
				b.Fatalf("mapping %d (%v:%d/%d) after a grant: %v", i, sub, sp.SPort, sp.Proto, xlat.Verdict(ret))
			}
			if err := a.NoPort(sub, sp.Proto); err != nil {
				b.Fatal(err)
			}
		}
	}
	return a
}
