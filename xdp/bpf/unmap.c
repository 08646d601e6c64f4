//go:build ignore

/* unmap.c: the XDP entry programs. Each is a thin wrapper around
 * unmap_process() (process.h) with its role; the features live in the
 * headers: parse.h, lookup.h, csum.h, translate.h, nat.h, icmp.h, fwd.h,
 * martian.h, miss.h, cgnat.h, reasons.h; what they share in types.h (structs),
 * maps.h (maps) and config.h (load-time constants, run-time switches). */

#include "process.h"

/* Edge, site side: flows to carriers; misses of the site's IPv6 to the agent. */
SEC("xdp")
int edge_lan(struct xdp_md *ctx)
{
	return unmap_process(ctx, ROLE_EDGE_LAN);
}

/* Edge, CGNAT side: carriers back to flows; carrier-range misses to the agent. */
SEC("xdp")
int edge_wan(struct xdp_md *ctx)
{
	return unmap_process(ctx, ROLE_EDGE_WAN);
}

/* Relay, Internet side: both directions; site-prefix and carrier misses to the agent. */
SEC("xdp")
int relay_ext(struct xdp_md *ctx)
{
	return unmap_process(ctx, ROLE_RELAY_EXT);
}

/* Relay, subscriber side: its CGNAT (cgnat.h). */
SEC("xdp")
int relay_sub(struct xdp_md *ctx)
{
	return cg_sub_process(ctx);
}

/* Benchmark floor: parsing and the one flow lookup, nothing else. */
SEC("xdp")
int bench_lookup(struct xdp_md *ctx)
{
	struct pkt p = {};

	if (parse(ctx, &p) != REASON_NONE)
		return XDP_ABORTED;
	return flow_lookup(&p.key) ? XDP_PASS : XDP_DROP;
}

/* Baseline for benchmarks: the cheapest possible XDP program. */
SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
