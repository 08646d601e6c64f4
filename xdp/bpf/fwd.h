/* fwd.h: forwarding a translated packet: bpf_fib_lookup for the next hop
 * and MACs, XDP_TX when it leaves where it came in, XDP_REDIRECT through
 * the tx_ports devmap otherwise, the stack when the kernel has no
 * neighbour yet or no XDP route (it resolves, fragments or answers).
 * Next hops come from a per-CPU cache when it has them (nhcache.h). */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
#include "nhcache.h"
#include "parse.h"
#include "reasons.h"

#define AF_INET 2
#define AF_INET6 10

/* send_to sets the MACs and sends the packet out of oif. */
static __always_inline int send_to(struct xdp_md *ctx, struct ethhdr *eth, __u32 oif,
				   const __u8 *dmac, const __u8 *smac)
{
	long rc;

	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	if (oif == ctx->ingress_ifindex)
		return XDP_TX;
	rc = bpf_redirect_map(&tx_ports, oif, XDP_PASS);
	if (rc == XDP_PASS)
		count_reason(REASON_PASS_FIB);
	return rc;
}

static __always_inline int forward(struct xdp_md *ctx, int out_v4)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth = data;
	struct nh_entry *nh = NULL;
	struct nh6_entry *nh6 = NULL;
	__u32 gen = 0;
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
		if (cfg_nh_ttl) {
			nh = nh_slot(ip->daddr, ip->saddr, ctx->ingress_ifindex, ip->tos, ip->protocol);
			if (nh && nh_hit(nh, ip->daddr, ip->saddr, ctx->ingress_ifindex, ip->tos,
					 ip->protocol, fib.tot_len))
				return send_to(ctx, eth, nh->oif, nh->dmac, nh->smac);
			/* Before the lookup: a bump during it leaves the
			 * entry stale (nhcache.h). */
			gen = sw_nh_gen;
		}
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
		if (cfg_nh_ttl) {
			nh6 = nh6_slot(fib.ipv6_dst, fib.ipv6_src, ctx->ingress_ifindex, fib.flowinfo,
				       fib.l4_protocol);
			if (nh6 && nh6_hit(nh6, fib.ipv6_dst, fib.ipv6_src, ctx->ingress_ifindex,
					   fib.flowinfo, fib.l4_protocol, fib.tot_len))
				return send_to(ctx, eth, nh6->oif, nh6->dmac, nh6->smac);
			gen = sw_nh_gen; /* before the lookup, as for IPv4 */
		}
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
	if (nh) {
		/* The lookup rewrote fib's inputs (ipv4_dst becomes the
		 * gateway, ifindex the egress): the key comes from the
		 * header, which it did not touch. */
		struct iphdr *ip = data + ETH_LEN;

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		nh->dst = ip->daddr;
		nh->src = ip->saddr;
		nh->iif = ctx->ingress_ifindex;
		nh->tos = ip->tos;
		nh->proto = ip->protocol;
		nh->max_len = bpf_ntohs(ip->tot_len);
		nh->gen = gen;
		nh->oif = fib.ifindex;
		__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
		nh->expires = bpf_jiffies64() + cfg_nh_ttl;
	}
	if (nh6) {
		/* The key from the header, as for IPv4 (ipv6_dst became
		 * the gateway). */
		struct ipv6hdr *ip6 = data + ETH_LEN;

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(nh6->dst, &ip6->daddr, 16);
		__builtin_memcpy(nh6->src, &ip6->saddr, 16);
		nh6->iif = ctx->ingress_ifindex;
		nh6->flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
		nh6->proto = ip6->nexthdr;
		nh6->max_len = bpf_ntohs(ip6->payload_len) + 40;
		nh6->gen = gen;
		nh6->oif = fib.ifindex;
		__builtin_memcpy(nh6->dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(nh6->smac, fib.smac, ETH_ALEN);
		nh6->expires = bpf_jiffies64() + cfg_nh_ttl;
	}
	return send_to(ctx, eth, fib.ifindex, fib.dmac, fib.smac);
}
