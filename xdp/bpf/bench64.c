//go:build ignore

/* bench64.c: NAT64 against NAT44 on established mappings, for
 * BenchmarkNAT64 (test-only object benchnat64_bpfel_test.o): the whole
 * datapath (unmap.c, without per-flow counters) behind a wrapper that
 * restores the frame before each run. BPF_PROG_RUN runs one buffer over
 * and over, and NAT64 moves the frame's head by 20 bytes each way, so
 * the restore first moves the head back to where the first run found it
 * (the frame's length says by how much), then copies the headers back:
 * every run is the same packet. bv64_restore is the wrapper alone. */

#define UNMAP_BENCH_NO_FLOW_COUNTERS
#include "unmap.c"

#define BV64_FRAMES 5
#define BV64_HDR 64 /* Ethernet, IPv6, UDP and 2 bytes: every byte translation rewrites */

__u8 bv64_frames[BV64_FRAMES][BV64_HDR];
__u32 bv64_len[BV64_FRAMES];

static __always_inline int bv64_restore_frame(struct xdp_md *ctx, int f)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	long len = end - data;

	if (f < 0 || f >= BV64_FRAMES)
		return -1;
	if (!bv64_len[f]) {
		if (data + BV64_HDR > end)
			return -1;
		__builtin_memcpy(bv64_frames[f], data, BV64_HDR);
		bv64_len[f] = len;
	}
	if (len != bv64_len[f] && bpf_xdp_adjust_head(ctx, len - (long)bv64_len[f]))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + BV64_HDR > end)
		return -1;
	__builtin_memcpy(data, bv64_frames[f], BV64_HDR);
	return 0;
}

SEC("xdp")
int bv64_restore(struct xdp_md *ctx)
{
	return bv64_restore_frame(ctx, 0) ? XDP_ABORTED : XDP_PASS;
}

/* The head moved by 20 bytes, then the restore: what the wrapper costs a
 * NAT64 run more than a NAT44 one (its restore moves the head back), as
 * the half of this program's cost over bv64_restore's. */
SEC("xdp")
int bv64_move(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_head(ctx, 20))
		return XDP_ABORTED;
	return bv64_restore_frame(ctx, 0) ? XDP_ABORTED : XDP_PASS;
}

/* NAT64: an IPv6-only subscriber's packet out, the answer in. */
SEC("xdp")
int bv64_sub64(struct xdp_md *ctx)
{
	return bv64_restore_frame(ctx, 1) ? XDP_ABORTED : cg_sub_process(ctx);
}

SEC("xdp")
int bv64_ext64(struct xdp_md *ctx)
{
	return bv64_restore_frame(ctx, 2) ? XDP_ABORTED : unmap_process(ctx, ROLE_RELAY_EXT);
}

/* NAT44 the same way, the baseline. */
SEC("xdp")
int bv64_sub44(struct xdp_md *ctx)
{
	return bv64_restore_frame(ctx, 3) ? XDP_ABORTED : cg_sub_process(ctx);
}

SEC("xdp")
int bv64_ext44(struct xdp_md *ctx)
{
	return bv64_restore_frame(ctx, 4) ? XDP_ABORTED : unmap_process(ctx, ROLE_RELAY_EXT);
}
