/* icmp.h: ICMP error translation (RFC 7915 4.2, 5.2; RFC 5508 for NAPT).
 * The outer header is translated like any packet of the entry's direction;
 * the embedded header with the entry reversed. Both IP headers change
 * size, so an ICMPv6 error loses 40 bytes and an ICMPv4 error gains 40;
 * the ICMP checksum is updated incrementally over every changed byte and
 * the embedded L4 checksum is left as it is. PTB <-> Fragmentation Needed
 * adjusts the MTU by the 20-byte header difference. Order of writes matters:
 * new headers overlap old ones, so every old field is read first. */
#pragma once

#include "common.h"
#include "csum.h"
#include "config.h"
#include "types.h"
#include "parse.h"
#include "reasons.h"
#include "translate.h"

/* Who sent an error (session/xlat/icmperr.go says it at length): the far
 * end of what it is about (outer source = embedded destination) gets the
 * translation below; a router beyond the relay has its ICMPv6 error handed
 * to the relay's agent, for the edge; a router on the carrier path (or a
 * time exceeded in transit from anyone) appears as its IPv4 address in
 * 64:ff9b::/96 (RFC 6052). */
#define WKP_HI 0x0064ff9b /* 64:ff9b::/96, first 32 bits */

#define ERR_EMB4 (ETH_LEN + 20 + 8) /* embedded header behind an ICMPv4 error */
#define ERR_EMB6 (ETH_LEN + 40 + 8) /* embedded header behind an ICMPv6 error */

/* Packets that match an entry but go to the agent. At the relay: ICMPv6
 * errors from routers beyond it, and carriers whose TTL runs out here
 * (addressed to the relay, its stack would take them as its own instead
 * of answering time exceeded). At the edge's LAN: IPv6 whose hop limit
 * runs out here (the edge's stack has no IPv6 route out and would answer
 * no route). REASON_NONE: the fast path goes on. */
static __always_inline enum reason slow_path(enum role role, const struct pkt *p)
{
	if (role == ROLE_EDGE_LAN)
		return !p->icmp_err && p->key.family == 6 && p->ttl <= 1 ?
			REASON_TTL_TO_AGENT : REASON_NONE;
	if (p->icmp_err && p->key.family == 6) {
		struct ipv6hdr *ip6 = p->data + ETH_LEN;
		__u32 *s;

		if ((void *)(ip6 + 1) > p->end)
			return REASON_DROP_HELPER;
		s = (__u32 *)&ip6->saddr;
		if (s[0] == p->key.saddr[0] && s[1] == p->key.saddr[1] &&
		    s[2] == p->key.saddr[2] && s[3] == p->key.saddr[3])
			return REASON_NONE; /* from the far end: translated */
		return p->ttl <= 1 ? REASON_PASS_TTL : REASON_ICMP_ERR_TO_AGENT;
	}
	if (!p->icmp_err && p->key.family == 4 && p->ttl <= 1 && cfg_carrier_addr &&
	    p->key.daddr[0] == cfg_carrier_addr)
		return REASON_TTL_TO_AGENT;
	return REASON_NONE;
}

/* ICMPv6 type/code -> ICMPv4 (RFC 7915 5.2); 0 if not translated. */
static __always_inline int map64(__u8 t, __u8 c, __u8 *t4, __u8 *c4)
{
	if (t == 1 && (c == 0 || c == 2 || c == 3)) { *t4 = 3; *c4 = 1; return 1; }
	if (t == 1 && c == 1) { *t4 = 3; *c4 = 10; return 1; }
	if (t == 1 && c == 4) { *t4 = 3; *c4 = 3; return 1; }
	if (t == 2 && c == 0) { *t4 = 3; *c4 = 4; return 1; }
	if (t == 3 && c <= 1) { *t4 = 11; *c4 = c; return 1; }
	return 0;
}

/* ICMPv4 type/code -> ICMPv6 (RFC 7915 4.2); 0 if not translated. */
static __always_inline int map46(__u8 t, __u8 c, __u8 *t6, __u8 *c6)
{
	if (t == 3 && (c <= 1 || c == 5 || c == 6 || c == 7 || c == 8 || c == 11 || c == 12)) {
		*t6 = 1; *c6 = 0; return 1;
	}
	if (t == 3 && (c == 9 || c == 10 || c == 13 || c == 15)) { *t6 = 1; *c6 = 1; return 1; }
	if (t == 3 && c == 3) { *t6 = 1; *c6 = 4; return 1; }
	if (t == 3 && c == 4) { *t6 = 2; *c6 = 0; return 1; }
	if (t == 11 && c <= 1) { *t6 = 3; *c6 = c; return 1; }
	return 0;
}

/* Embedded packet's ports (or echo identifier) from the reversed entry;
 * to: 4 or 6 maps the echo type, 0 keeps it. */
static __always_inline void rewrite_emb(const struct pkt *p, __u8 *el4,
					const struct flow_entry *e, int to)
{
	if (p->key.proto == IPPROTO_TCP || p->key.proto == IPPROTO_UDP) {
		((__be16 *)el4)[0] = e->dport;
		((__be16 *)el4)[1] = e->sport;
		return;
	}
	*(__be16 *)(el4 + 4) = (el4[0] == ICMP_ECHO || el4[0] == ICMP6_ECHO) ? e->dport : e->sport;
	if (to == 4)
		el4[0] = el4[0] == ICMP6_ECHO ? ICMP_ECHO : ICMP_ECHOREPLY;
	else if (to == 6)
		el4[0] = el4[0] == ICMP_ECHO ? ICMP6_ECHO : ICMP6_ECHOREPLY;
}

static __always_inline __u8 native_out(__u8 proto, int to4)
{
	if (proto == IPPROTO_ICMPV6 && to4)
		return IPPROTO_ICMP;
	if (proto == IPPROTO_ICMP && !to4)
		return IPPROTO_ICMPV6;
	return proto;
}

static __always_inline __u64 csum_sub_words(__u64 acc, const __u32 *w, int n)
{
#pragma unroll
	for (int i = 0; i < 10; i++)
		if (i < n)
			acc += (__u32)~w[i];
	return acc;
}

static __always_inline __u64 csum_add_words(__u64 acc, const __u32 *w, int n)
{
#pragma unroll
	for (int i = 0; i < 10; i++)
		if (i < n)
			acc += w[i];
	return acc;
}

/* ICMPv6 error -> ICMPv4 error, 40 bytes shorter. */
static __always_inline enum reason err64(struct xdp_md *ctx, struct pkt *p,
					 const struct flow_entry *e)
{
	void *data = p->data;
	__u8 *ic = data + ETH_LEN + 40, *e6 = data + ERR_EMB6, *el4 = data + ERR_EMB6 + 40;
	struct ipv6hdr *ip6 = data + ETH_LEN;
	__u8 t4, c4, otc, etc, enh, ehop;
	__u16 eplen, old_csum, w0;
	__u32 rest, mtu;
	__u64 acc = 0;

	if ((void *)(el4 + 8) > p->end)
		return REASON_DROP_HELPER;
	if (!map64(ic[0], ic[1], &t4, &c4))
		return REASON_PASS_ICMP_OTHER;
	otc = ipv6_tc(ip6);
	old_csum = *(__u16 *)(ic + 2);
	rest = 0;
	if (t4 == 3 && c4 == 4) {
		mtu = bpf_ntohl(*(__be32 *)(ic + 4));
		mtu = mtu < 20 ? 0 : mtu - 20;
		rest = bpf_htonl(mtu > 0xffff ? 0xffff : mtu);
	}
	/* Remove what goes: ICMPv6 pseudo-header, type/code, bytes 4-7,
	 * the embedded IPv6 header and the embedded L4's first 8 bytes. */
	acc = csum_sub128(acc, (__u32 *)&ip6->saddr);
	acc = csum_sub128(acc, (__u32 *)&ip6->daddr);
	acc = csum_sub32(acc, bpf_htonl(p->l4len));
	acc = csum_sub32(acc, bpf_htonl(IPPROTO_ICMPV6));
	acc = csum_sub16(acc, *(__u16 *)ic);
	acc = csum_sub32(acc, *(__u32 *)(ic + 4));
	acc = csum_sub_words(acc, (__u32 *)e6, 10);
	etc = ipv6_tc((struct ipv6hdr *)e6);
	eplen = bpf_ntohs(*(__be16 *)(e6 + 4));
	enh = e6[6];
	ehop = e6[7];
	acc = csum_sub_words(acc, (__u32 *)el4, 2);
	rewrite_emb(p, el4, e, 4);
	acc = csum_add_words(acc, (__u32 *)el4, 2);
	/* New layout, before the head moves by 40: eth 40, IPv4 54, ICMP 74,
	 * embedded IPv4 82, embedded L4 102 (where it already is). */
	put_ipv4(data + 82, etc, eplen + 20, native_out(enh, 1), ehop, e->daddr[0], e->saddr[0]);
	acc = csum_add_words(acc, data + 82, 5);
	ic = data + 74;
	ic[0] = t4;
	ic[1] = c4;
	*(__u32 *)(ic + 4) = rest;
	w0 = *(__u16 *)ic;
	acc += w0;
	acc += rest;
	*(__u16 *)(ic + 2) = csum_apply(old_csum, acc);
	put_ipv4(data + 54, otc, p->l4len, IPPROTO_ICMP, p->ttl - 1, e->saddr[0], e->daddr[0]);
	__builtin_memcpy(data + 40, data, 12);
	*(__be16 *)(data + 52) = bpf_htons(ETH_P_IP);
	if (bpf_xdp_adjust_head(ctx, 40))
		return REASON_DROP_HELPER;
	return REASON_NONE;
}

/* ICMPv4 error -> ICMPv6 error, 40 bytes longer; a router's address
 * shows in the /96 pfx0:pfx1:pfx2 (network order: the carriers' WKP, or
 * NAT64's own prefix, nat64.h). */
static __always_inline enum reason err46(struct xdp_md *ctx, struct pkt *p,
					 const struct flow_entry *e, __u32 pfx0, __u32 pfx1, __u32 pfx2)
{
	void *data = p->data, *end;
	__u8 *ic = data + ETH_LEN + 20, *e4 = data + ERR_EMB4, *el4 = data + ERR_EMB4 + 20;
	__u8 t6, c6, otos, etos, eproto, ettl;
	__u16 etot, old_csum;
	__u32 rest = 0, src[4];
	__u64 acc = 0;
	struct ipv6hdr *ip6;

	if ((void *)(el4 + 8) > p->end)
		return REASON_DROP_HELPER;
	if (!map46(ic[0], ic[1], &t6, &c6))
		return REASON_PASS_ICMP_OTHER;
	__builtin_memcpy(src, e->saddr, 16);
	{
		__u32 from = ((struct iphdr *)(data + ETH_LEN))->saddr;

		if (from != *(__u32 *)(e4 + 16) || (ic[0] == 11 && ic[1] == 0)) {
			src[0] = pfx0; /* a router on the carrier path */
			src[1] = pfx1;
			src[2] = pfx2;
			src[3] = from;
		}
	}
	if (t6 == 2) {
		__u16 mtu = bpf_ntohs(*(__be16 *)(ic + 6));

		if (!mtu)
			return REASON_PASS_ICMP_OTHER;
		rest = bpf_htonl((__u32)mtu + 20);
	}
	otos = ((__u8 *)data)[ETH_LEN + 1];
	old_csum = *(__u16 *)(ic + 2);
	acc = csum_sub16(acc, *(__u16 *)ic);
	acc = csum_sub32(acc, *(__u32 *)(ic + 4));
	acc = csum_sub_words(acc, (__u32 *)e4, 5);
	etos = e4[1];
	etot = bpf_ntohs(*(__be16 *)(e4 + 2));
	ettl = e4[8];
	eproto = e4[9];
	acc = csum_sub_words(acc, (__u32 *)el4, 2);
	rewrite_emb(p, el4, e, 6);
	acc = csum_add_words(acc, (__u32 *)el4, 2);
	acc += (__u16)(t6 | c6 << 8); /* type and code as stored (raw) */
	acc += rest;
	acc += pseudo6_sum(src, e->daddr, p->l4len + 20);
	if (bpf_xdp_adjust_head(ctx, -40))
		return REASON_DROP_HELPER;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + ERR_EMB6 + 40 + 8 > end)
		return REASON_DROP_HELPER;
	__builtin_memcpy(data, data + 40, 12);
	*(__be16 *)(data + 12) = bpf_htons(ETH_P_IPV6);
	ip6 = data + ETH_LEN;
	put_ipv6(ip6, otos, p->l4len + 20, IPPROTO_ICMPV6, p->ttl - 1, src, e->daddr);
	put_ipv6(data + ERR_EMB6, etos, etot - 20, native_out(eproto, 0), ettl, e->daddr, e->saddr);
	acc = csum_add_words(acc, data + ERR_EMB6, 10);
	ic = data + ETH_LEN + 40;
	ic[0] = t6;
	ic[1] = c6;
	*(__u32 *)(ic + 4) = rest;
	*(__u16 *)(ic + 2) = csum_apply(old_csum, acc);
	return REASON_NONE;
}

/* ICMPv4 error through NAPT: outer and embedded rewritten, same size;
 * the outer source becomes osrc (the carriers' NAPT: the flow's far end;
 * the CGNAT: itself inbound, where the router that sent it stays). */
static __always_inline enum reason err_napt_src(struct pkt *p, const struct flow_entry *e,
						__u32 osrc)
{
	void *data = p->data;
	struct iphdr *ip = data + ETH_LEN;
	__u8 *ic = data + ETH_LEN + 20, *el4 = data + ERR_EMB4 + 20;
	struct iphdr *e4 = data + ERR_EMB4;
	__u64 acc = 0;

	if ((void *)(el4 + 8) > p->end)
		return REASON_DROP_HELPER;
	acc = csum_sub_words(acc, (__u32 *)e4, 5);
	acc = csum_sub_words(acc, (__u32 *)el4, 2);
	e4->saddr = e->daddr[0];
	e4->daddr = e->saddr[0];
	e4->check = 0;
	e4->check = ~ipv4_sum(e4);
	rewrite_emb(p, el4, e, 0);
	acc = csum_add_words(acc, (__u32 *)e4, 5);
	acc = csum_add_words(acc, (__u32 *)el4, 2);
	*(__u16 *)(ic + 2) = csum_apply(*(__u16 *)(ic + 2), acc);
	ip->ttl = p->ttl - 1;
	ip->saddr = osrc;
	ip->daddr = e->daddr[0];
	ip->check = 0;
	ip->check = ~ipv4_sum(ip);
	return REASON_NONE;
}

static __always_inline enum reason err_napt(struct pkt *p, const struct flow_entry *e)
{
	return err_napt_src(p, e, e->saddr[0]);
}
