package xdp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/test/priv"
)

// BenchmarkCGNATMappingLookup: one NAT44 mapping's lookup in cg_table
// (cg_lookup, the datapath's) against the preallocated kernel hash the
// datapath used before, both sized for 1M mappings, holding 1k to 1M of
// them, each run looking up another in a scattered order
// (bpf/benchtab.c). Reported: each lookup's time over the key's making
// alone (bt_none), and the table's over the hash's, measured in the same
// iteration. `go test -run '^$' -bench CGNATMappingLookup ./xdp`
func BenchmarkCGNATMappingLookup(b *testing.B) {
	priv.Require(b)
	const most = 1 << 20
	for _, n := range []int{1000, 10_000, 100_000, most} {
		b.Run(fmt.Sprintf("mappings=%d", n), func(b *testing.B) {
			spec, err := loadBenchtab()
			if err != nil {
				b.Fatal(err)
			}
			ts, err := configure(spec, xdpbench.Config, Options{CGNAT: benchCGNAT, CGNATMappings: most}, nil)
			if err != nil {
				b.Fatal(err)
			}
			spec.Maps["bt_hash"].MaxEntries = most
			if err := spec.Variables["bt_keys"].Set(uint64(n)); err != nil {
				b.Fatal(err)
			}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				b.Fatal(err)
			}
			defer coll.Close()
			d, err := fromCollection(coll, xdpbench.Config, benchCGNAT, ts)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			keys, vals := make([]datapathCgKey, n), make([]datapathCgOut, n)
			for i := range n {
				a := netip.AddrFrom4([4]byte{100, 64 + byte(i>>18), byte(i >> 10 >> 8), byte(i >> 10)})
				keys[i] = datapathCgKey{Addr: net32(a), Port: hport(uint16(1024 + i&1023)), Proto: 17}
				vals[i] = datapathCgOut{Addr: net32(benchNATPub), Port: hport(uint16(i)), Epoch: 1}
				if added, err := d.cgt.add(keys[i], vals[i]); !added || err != nil {
					b.Fatalf("mapping %d not added: %v", i, err)
				}
			}
			if _, err := coll.Maps["bt_hash"].BatchUpdate(keys, vals, nil); err != nil {
				b.Fatal(err)
			}
			pkt := make([]byte, 64)
			const runs = 200_000
			var took [3]time.Duration
			progs := []string{"bt_none", "bt_hash_lookup", "bt_table_lookup"}
			for b.Loop() {
				for i, p := range progs {
					_, per, err := coll.Programs[p].Benchmark(pkt, runs, nil)
					if err != nil {
						b.Fatal(err)
					}
					took[i] += per
				}
			}
			var found uint64
			if err := coll.Variables["bt_found"].Get(&found); err != nil || found == 0 {
				b.Fatalf("no lookup found its key (%v)", err)
			}
			iters := float64(b.N)
			hash := float64(took[1]-took[0]) / iters
			table := float64(took[2]-took[0]) / iters
			b.ReportMetric(hash, "hash-ns/lookup")
			b.ReportMetric(table, "table-ns/lookup")
			b.ReportMetric(table/hash, "table-x-hash")
		})
	}
}
