/* fwd.h: forwarding a translated packet: bpf_fib_lookup for the next hop
 * and MACs, XDP_TX when it leaves where it came in, XDP_REDIRECT through
 * the tx_ports devmap otherwise, the stack when the kernel has no
 * neighbour yet or no XDP route (it resolves, fragments or answers). */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
#include "parse.h"
#include "reasons.h"

#define AF_INET 2
#define AF_INET6 10

static __always_inline int forward(struct xdp_md *ctx, int out_v4)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth = data;
	long rc;

	if (!sw_fib)
		return XDP_PASS;
	if (out_v4) {
		struct iphdr *ip = data + ETH_LEN;

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		fib.family = AF_INET;
		fib.tos = ip->tos;
		fib.l4_protocol = ip->protocol;
		fib.tot_len = bpf_ntohs(ip->tot_len);
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = data + ETH_LEN;

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		fib.family = AF_INET6;
		fib.flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
		fib.l4_protocol = ip6->nexthdr;
		fib.tot_len = bpf_ntohs(ip6->payload_len) + 40;
		__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
	}
	fib.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		count_reason(REASON_PASS_NO_NEIGH);
		return XDP_PASS;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		count_reason(REASON_PASS_FIB);
		return XDP_PASS;
	}
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	rc = bpf_redirect_map(&tx_ports, fib.ifindex, XDP_PASS);
	if (rc == XDP_PASS)
		count_reason(REASON_PASS_FIB);
	return rc;
}
