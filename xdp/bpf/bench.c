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

/* The CGNAT (cgnat.h), for BenchmarkCGNAT. BPF_PROG_RUN runs one buffer
 * over and over; a NAT's output is not its own input, but swapped (source
 * and destination addresses and ports exchanged, which leaves every
 * checksum as it is) it is the other direction's. So each run swaps, then
 * a subscriber's packet takes the subscriber side and any other the
 * Internet side, and runs alternate outbound and inbound over one
 * mapping. bv_swap is the swap alone; bv_swap_ext the same wrapper around
 * the carriers' path (a NAPT pair in the flow table), the baseline. */
static __always_inline int bv_swap_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_LEN;
	__be16 *ports = data + L4_4, t16;
	__u32 t;

	if ((void *)(ports + 2) > end)
		return -1;
	t = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = t;
	t16 = ports[0];
	ports[0] = ports[1];
	ports[1] = t16;
	return 0;
}

SEC("xdp")
int bv_swap(struct xdp_md *ctx)
{
	return bv_swap_frame(ctx) ? XDP_ABORTED : XDP_PASS;
}

SEC("xdp")
int bv_swap_ext(struct xdp_md *ctx)
{
	if (bv_swap_frame(ctx))
		return XDP_ABORTED;
	return unmap_process(ctx, ROLE_RELAY_EXT);
}

SEC("xdp")
int bv_cg_pair(struct xdp_md *ctx)
{
	struct iphdr *ip = (void *)(long)ctx->data + ETH_LEN;

	if (bv_swap_frame(ctx) || (void *)(ip + 1) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	if (cg_inside(ip->saddr))
		return cg_sub_process(ctx);
	return unmap_process(ctx, ROLE_RELAY_EXT);
}

/* Each run restores the frame's headers as the first run of its program
 * found them (frame f of bv_frames), so BPF_PROG_RUN's repeats see the
 * same packet. bv_cg_new also gives it the next (subscriber, port) of a
 * counter, 2048 ports for each of 64 subscribers from the inside
 * prefix's third address, so every run makes a mapping; bv_cg_fresh does
 * that and stops (what restoring costs). bv_cg_again_sub and _ext run
 * one direction of an established mapping alone; bv_cg_again restores
 * and stops. */
#define BV_FRAMES 4
__u8 bv_frames[BV_FRAMES][L4_4 + 8];
__u32 bv_saved[BV_FRAMES], bv_count;

static __always_inline int bv_restore(struct xdp_md *ctx, int f, int bump)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_LEN;
	__be16 *sport = data + L4_4;
	__u32 n;

	if (data + sizeof(bv_frames[0]) > end || f < 0 || f >= BV_FRAMES)
		return -1;
	if (!bv_saved[f]) {
		__builtin_memcpy(bv_frames[f], data, sizeof(bv_frames[0]));
		bv_saved[f] = 1;
	}
	__builtin_memcpy(data, bv_frames[f], sizeof(bv_frames[0]));
	if (!bump)
		return 0;
	n = bv_count++;
	ip->saddr = bpf_htonl(cfg_cg_in_net + 2 + ((n >> 11) & 63));
	*sport = bpf_htons(1024 + (n & 2047));
	ip->check = 0;
	ip->check = ~ipv4_sum(ip);
	return 0;
}

SEC("xdp")
int bv_cg_fresh(struct xdp_md *ctx)
{
	return bv_restore(ctx, 0, 1) ? XDP_ABORTED : XDP_PASS;
}

SEC("xdp")
int bv_cg_new(struct xdp_md *ctx)
{
	if (bv_restore(ctx, 1, 1))
		return XDP_ABORTED;
	return cg_sub_process(ctx);
}

SEC("xdp")
int bv_cg_again(struct xdp_md *ctx)
{
	return bv_restore(ctx, 0, 0) ? XDP_ABORTED : XDP_PASS;
}

SEC("xdp")
int bv_cg_again_sub(struct xdp_md *ctx)
{
	if (bv_restore(ctx, 2, 0))
		return XDP_ABORTED;
	return cg_sub_process(ctx);
}

SEC("xdp")
int bv_cg_again_ext(struct xdp_md *ctx)
{
	if (bv_restore(ctx, 3, 0))
		return XDP_ABORTED;
	return unmap_process(ctx, ROLE_RELAY_EXT);
}
