package xdp

// The BPF objects are generated with Debian's clang 14 and committed, so a
// plain `go build` needs no clang. Paths are relative and bpf2go maps the
// source directory out of the debug info, so the output does not depend on
// where the tree is checked out (TestGenerateReproducible checks this).
// -fno-strict-aliasing: checksums read headers as 32-bit words right after
// writing their 8- and 16-bit fields; the kernel builds with it too.
//go:generate go tool bpf2go -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -fno-strict-aliasing -Ibpf/include" -type reason -type action -type role -type flow_key -type flow_key4 -type flow_entry -type carrier_slot -type flow_way -type flow_bucket -type miss_rec -type cg_key -type cg_key6 -type cg_out -type cg_way -type cg_bucket -type cg_in -type cg_block -type cg_sub -type cg_perm -type cg_event datapath bpf/unmap.c

// The same C built with -DUNMAP_COUNT_LOOKUPS, for tests only (the _test
// suffix keeps it out of the binary): every map lookup also increments the
// global unmap_lookups, so TestOneLookupPerEstablishedPacket can count them.
//go:generate go tool bpf2go -target bpfel -output-suffix _test -cflags "-O2 -mcpu=v3 -g -Wall -Werror -fno-strict-aliasing -Ibpf/include -DUNMAP_COUNT_LOOKUPS" lookups bpf/unmap.c

// Benchmark variants (bpf/bench.c, which builds unmap.c without flow
// counters and adds one program per part of the established path), for
// BenchmarkBreakdown only.
//go:generate go tool bpf2go -target bpfel -output-suffix _test -cflags "-O2 -mcpu=v3 -g -Wall -Werror -fno-strict-aliasing -Ibpf/include" benchvar bpf/bench.c

// NAT64 against NAT44 on established mappings (bpf/bench64.c), for
// BenchmarkNAT64 only.
//go:generate go tool bpf2go -target bpfel -output-suffix _test -cflags "-O2 -mcpu=v3 -g -Wall -Werror -fno-strict-aliasing -Ibpf/include" benchnat64 bpf/bench64.c

// A NAT44 mapping's lookup in cg_table against the kernel hash it
// replaced (bpf/benchtab.c), for BenchmarkCGNATMappingLookup only.
//go:generate go tool bpf2go -target bpfel -output-suffix _test -cflags "-O2 -mcpu=v3 -g -Wall -Werror -fno-strict-aliasing -Ibpf/include" benchtab bpf/benchtab.c
