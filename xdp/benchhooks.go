package xdp

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// What `unmap bench xdp` (package bench) needs of a Datapath beyond the
// agents' calls. The bench's flows and packets live in bench/xdpbench, so
// this package, linked by both agents, links no test fixture.

// PassProgram is the datapath object's empty XDP_PASS program: the
// bench's baseline.
func (d *Datapath) PassProgram() *ebpf.Program { return d.objs.XdpPass }

// LookupProgram is bench_lookup: parsing and the flow table or slot
// lookup of a packet, without translating it (the bench's floor).
func (d *Datapath) LookupProgram() *ebpf.Program { return d.objs.BenchLookup }

// ExhaustMissBucket empties the miss bucket of the LAN host src for
// about 146 years of CLOCK_MONOTONIC, so every miss from it is over the
// rate however long a bench runs.
func (d *Datapath) ExhaustMissBucket(src netip.Addr) error {
	k := missSrcOf(netip.PrefixFrom(src, src.BitLen()))
	if err := d.objs.MissSrcs.Update(&k, uint64(1)<<62, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("empty the miss bucket of %v: %w", src, err)
	}
	return nil
}
