/* cg_refuse.h: a refused first packet answered with ICMP destination
 * unreachable, administratively prohibited, under a rate bound (cgnat.h). */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
#include "parse.h"
#include "reasons.h"
#include "types.h"
#include "csum.h"
#include "translate.h"

/* May one more admin-prohibited answer go? A token bucket for the relay
 * (GCRA, as miss_allowed), so a subscriber at its quota cannot make the
 * relay an ICMP amplifier. Plain loads and stores: two CPUs at the same
 * instant may both answer. */
static __always_inline int cg_refuse_allowed(void)
{
	__u32 z = 0;
	__u64 *t, now, next;

	if (!cfg_cg_refuse_ns)
		return 1;
	t = map_lookup(&cg_refuse_at, &z);
	if (!t)
		return 0;
	now = bpf_ktime_get_ns();
	next = (*t > now ? *t : now) + cfg_cg_refuse_ns;
	if (next - now > cfg_cg_refuse_depth_ns)
		return 0;
	*t = next;
	return 1;
}

#define CG_REFUSE_LEN (ETH_LEN + 20 + 8 + 28) /* answer: IPv4, ICMP, the IPv4 header and 8 bytes it is about */

/* Turn the IPv4 packet at p back to its sender as ICMP destination
 * unreachable with code and, for fragmentation needed, the next-hop mtu
 * (0 otherwise: the word is unused), from address from (the packet's
 * destination if 0), quoting its header and 8 bytes: the frame grows by
 * 28 bytes in front and is cut to 70. counted is the reason an answer
 * sent is counted under. Under the answers' rate bound. */
static __always_inline int cg_icmp4_unreach(struct xdp_md *ctx, struct pkt *p, __u8 code, __u16 mtu,
					    __u32 from, enum reason counted)
{
	void *data = p->data, *end;
	struct iphdr *oip = data + ETH_LEN;
	__u8 mac[12];
	__u32 to, *w;
	__u8 *ic;
	__u64 acc;
	int cut;

	if (!cg_refuse_allowed())
		return verdict(REASON_DROP_CGNAT_REFUSED_RATE);
	if ((void *)oip + 28 > p->end)
		return verdict(REASON_DROP_HELPER);
	__builtin_memcpy(mac, data + 6, 6); /* to the sender */
	__builtin_memcpy(mac + 6, data, 6);
	to = oip->saddr;
	if (!from)
		from = oip->daddr;
	if (bpf_xdp_adjust_head(ctx, -28))
		return verdict(REASON_DROP_HELPER);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + CG_REFUSE_LEN > end)
		return verdict(REASON_DROP_HELPER);
	cut = (end - data) - CG_REFUSE_LEN;
	__builtin_memcpy(data, mac, 12);
	*(__be16 *)(data + 12) = bpf_htons(ETH_P_IP);
	ic = data + ETH_LEN + 20;
	ic[0] = 3;
	ic[1] = code;
	*(__u16 *)(ic + 2) = 0;
	*(__u16 *)(ic + 4) = 0;
	*(__be16 *)(ic + 6) = bpf_htons(mtu);
	w = (__u32 *)(ic + 8);
	acc = (__u16)(3 | code << 8); /* type and code as stored (raw) */
	acc += *(__u32 *)(ic + 4);
	acc += (__u64)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6];
	*(__u16 *)(ic + 2) = ~csum_fold(acc);
	put_ipv4(data + ETH_LEN, 0, 20 + 8 + 28, IPPROTO_ICMP, 64, from, to);
	if (cut && bpf_xdp_adjust_tail(ctx, -cut))
		return verdict(REASON_DROP_HELPER);
	count_reason(counted);
	return XDP_TX;
}

/* Answer a refused first packet with ICMP destination unreachable,
 * communication administratively prohibited (type 3 code 13, RFC 1812;
 * RFC 6888 REQ-4's quota made to fail fast), from the relay's
 * subscriber-side address (cfg_cg_gw; the packet's destination if none),
 * back where it came from. */
static __always_inline int cg_refuse(struct xdp_md *ctx, struct pkt *p)
{
	return cg_icmp4_unreach(ctx, p, 13, 0, cfg_cg_gw, REASON_CGNAT_REFUSED);
}
