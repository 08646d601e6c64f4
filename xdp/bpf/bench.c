//go:build ignore

/* bench.c: benchmark variants that take the established path apart, for
 * BenchmarkBreakdown (test-only object benchvar_bpfel_test.o). The whole
 * datapath is unmap.c built without the per-flow counters; each bv_*
 * program adds one part on top of parsing, so the differences between
 * them, measured in one run, say what each part costs. */

#define UNMAP_BENCH_NO_FLOW_COUNTERS
#include "unmap.c"

/* The same flow keys in a shared (not per-CPU) hash. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_entry);
} bv_flows_shared SEC(".maps");

/* The IPv4 keys in a hash of their own (flows4 holds only spilled keys):
 * struct flow_key4, 16 bytes instead of 40. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key4);
	__type(value, struct flow_entry);
} bv_flows4 SEC(".maps");

static __always_inline int bv_parsed(struct xdp_md *ctx, struct pkt *p)
{
	return parse(ctx, p) == REASON_NONE;
}

/* Parsing alone. */
SEC("xdp")
int bv_parse(struct xdp_md *ctx)
{
	struct pkt p = {};

	return bv_parsed(ctx, &p) ? XDP_PASS : XDP_ABORTED;
}

/* Parsing and the per-CPU flows hash, 40-byte key, always (no slot). */
SEC("xdp")
int bv_hash40(struct xdp_md *ctx)
{
	struct pkt p = {};

	if (!bv_parsed(ctx, &p))
		return XDP_ABORTED;
	return map_lookup(&flows, &p.key) ? XDP_PASS : XDP_DROP;
}

/* The same in a shared hash. */
SEC("xdp")
int bv_hash40_shared(struct xdp_md *ctx)
{
	struct pkt p = {};

	if (!bv_parsed(ctx, &p))
		return XDP_ABORTED;
	return map_lookup(&bv_flows_shared, &p.key) ? XDP_PASS : XDP_DROP;
}

/* Parsing and a per-CPU hash with a 16-byte IPv4 key. */
SEC("xdp")
int bv_hash16(struct xdp_md *ctx)
{
	struct pkt p = {};
	__u64 k[2];

	if (!bv_parsed(ctx, &p))
		return XDP_ABORTED;
	/* struct flow_key4 in two whole-word stores, as lookup.h builds it */
	k[0] = (__u64)p.key.proto | (__u64)p.key.sport << 16 | (__u64)p.key.dport << 32;
	k[1] = (__u64)p.key.saddr[0] | (__u64)p.key.daddr[0] << 32;
	return map_lookup(&bv_flows4, k) ? XDP_PASS : XDP_DROP;
}

/* Parsing and the datapath's lookup (a carrier key: its slot; other
 * keys: the flow table). */
SEC("xdp")
int bv_lookup(struct xdp_md *ctx)
{
	struct pkt p = {};

	if (!bv_parsed(ctx, &p))
		return XDP_ABORTED;
	return flow_lookup(&p.key) ? XDP_PASS : XDP_DROP;
}

/* Parsing, the datapath's lookup and two bpf_xdp_adjust_head calls that
 * cancel out: what the helper a carrier translation needs costs. */
SEC("xdp")
int bv_adjust(struct xdp_md *ctx)
{
	struct pkt p = {};

	if (!bv_parsed(ctx, &p) || !flow_lookup(&p.key))
		return XDP_ABORTED;
	if (bpf_xdp_adjust_head(ctx, 20) || bpf_xdp_adjust_head(ctx, -20))
		return XDP_ABORTED;
	return XDP_PASS;
}

/* The whole datapath without the martian check of established packets
 * (martian.h): against the entry programs of this object, what the
 * check costs. */
SEC("xdp")
int bv_lan_unfiltered(struct xdp_md *ctx)
{
	return unmap_process_filtered(ctx, ROLE_EDGE_LAN, 0);
}

SEC("xdp")
int bv_relay_unfiltered(struct xdp_md *ctx)
{
	return unmap_process_filtered(ctx, ROLE_RELAY_EXT, 0);
}
