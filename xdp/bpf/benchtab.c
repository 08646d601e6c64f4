//go:build ignore

/* benchtab.c: a NAT44 mapping's lookup, cg_table (cg_table.h, what the
 * datapath does) against the kernel hash it replaced, for
 * BenchmarkCGNATMappingLookup (test-only object benchtab_bpfel_test.o).
 * Each run looks up the key of the next of bt_keys mappings, in an order
 * a multiplicative hash scatters, so a run after run misses the cache
 * and the TLB as a million subscribers' packets would. bt_none is the
 * key's making alone: the baseline. */

#define UNMAP_BENCH_NO_FLOW_COUNTERS
#include "unmap.c"

/* The hash as the datapath had it: preallocated, sized for the most
 * mappings (set at load). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct cg_key);
	__type(value, struct cg_out);
} bt_hash SEC(".maps");

volatile const __u64 bt_keys = 1;
__u64 bt_next, bt_found;

/* Key i of the bench: 1024 ports of each subscriber from 100.64.0.0. */
static __always_inline struct cg_key bt_key(void)
{
	__u64 i = ((bt_next++ * 0x9E3779B97F4A7C15ULL) >> 20) % bt_keys;
	struct cg_key k = {
		.addr = bpf_htonl(0x64400000 + (__u32)(i >> 10)),
		.port = bpf_htons(1024 + (__u16)(i & 1023)),
		.proto = IPPROTO_UDP,
	};
	return k;
}

SEC("xdp")
int bt_none(struct xdp_md *ctx)
{
	struct cg_key k = bt_key();

	if (k.proto == 0)
		bt_found++;
	return XDP_DROP;
}

SEC("xdp")
int bt_hash_lookup(struct xdp_md *ctx)
{
	struct cg_key k = bt_key();

	if (map_lookup(&bt_hash, &k))
		bt_found++;
	return XDP_DROP;
}

SEC("xdp")
int bt_table_lookup(struct xdp_md *ctx)
{
	struct cg_key k = bt_key();
	struct cg_out o;
	__u16 *ep;

	if (cg_lookup(&k, &o, &ep))
		bt_found++;
	return XDP_DROP;
}
