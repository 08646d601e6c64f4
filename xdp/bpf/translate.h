/* translate.h: carrier translation in place, IPv6 <-> IPv4 (RFC 7915):
 * native carriers for TCP, UDP and ICMP echo (xlat64/xlat46) and UDP
 * carriers for any other payload (wrap64/unwrap46). L4 checksums are
 * updated incrementally (RFC 1624), so a corrupt input stays corrupt. */
#pragma once

#include "common.h"
#include "csum.h"
#include "types.h"
#include "parse.h"
#include "reasons.h"

/* Rewrite ports (TCP/UDP) or the echo identifier to the entry's, adding
 * the change to *acc. Returns the checksum offset in l4, or -1. */
static __always_inline int rewrite_ports(struct pkt *p, __u8 *l4,
					 const struct flow_entry *e, __u64 *acc)
{
	__u8 proto = p->key.proto;

	/* parse() checked these bounds; the verifier needs them again here. */
	if ((void *)(l4 + 8) > p->end)
		return -1;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		__be16 *ports = (__be16 *)l4;

		*acc = csum_sub16(*acc, ports[0]);
		*acc = csum_sub16(*acc, ports[1]);
		ports[0] = e->sport;
		ports[1] = e->dport;
		*acc += (__u16)e->sport + (__u16)e->dport;
		return proto == IPPROTO_TCP ? 16 : 6;
	}
	if ((proto == IPPROTO_ICMP && p->key.family == 4) ||
	    (proto == IPPROTO_ICMPV6 && p->key.family == 6)) {
		__be16 *id = (__be16 *)(l4 + 4);
		__be16 nid = p->echo_rq ? e->sport : e->dport;

		*acc = csum_sub16(*acc, *id);
		*id = nid;
		*acc += (__u16)nid;
		return 2;
	}
	return -1;
}

/* Store the updated L4 checksum; UDP: a zero input (IPv4 NAPT only)
 * stays zero and a computed zero is sent as all ones. */
static __always_inline void finish_csum(struct pkt *p, __u8 *l4, int off, __u64 acc)
{
	__u16 *c;
	__u16 v;

	if (off == 16) {
		if ((void *)(l4 + 18) > p->end)
			return;
		c = (__u16 *)(l4 + 16);
	}
	else if (off == 6 && (void *)(l4 + 8) <= p->end)
		c = (__u16 *)(l4 + 6);
	else if (off == 2 && (void *)(l4 + 8) <= p->end)
		c = (__u16 *)(l4 + 2);
	else
		return;
	if (p->key.proto == IPPROTO_UDP && *c == 0)
		return;
	v = csum_apply(*c, acc);
	if (p->key.proto == IPPROTO_UDP && v == 0)
		v = 0xffff;
	*c = v;
}

/* ICMPv6 pseudo-header sum of given addresses, length and next header 58. */
static __always_inline __u64 pseudo6_sum(const __u32 *s, const __u32 *d, __u16 len)
{
	__u64 acc = 0;

	acc = csum_add128(acc, s);
	acc = csum_add128(acc, d);
	return acc + bpf_htonl(len) + bpf_htonl(IPPROTO_ICMPV6);
}

/* Echo type 8/0 <-> 128/129, the type+code word change into *acc. */
static __always_inline void echo_type(__u8 *l4, int to6, __u64 *acc)
{
	__u16 *w = (__u16 *)l4;

	*acc = csum_sub16(*acc, *w);
	if (to6)
		l4[0] = l4[0] == ICMP_ECHO ? ICMP6_ECHO : ICMP6_ECHOREPLY;
	else
		l4[0] = l4[0] == ICMP6_ECHO ? ICMP_ECHO : ICMP_ECHOREPLY;
	*acc += *w;
}

/* Write a carrier IPv4 header: ID 0 with DF (RFC 6864 atomic datagram).
 * The header checksum is summed from the fields in registers, not read
 * back: a 32-bit load over just-written 8- and 16-bit stores cannot be
 * served from the store buffer and waits for them. */
static __always_inline void put_ipv4(struct iphdr *ip, __u8 tos, __u16 tot,
				     __u8 proto, __u8 ttl, __u32 saddr, __u32 daddr)
{
	__u16 w0 = bpf_htons(0x4500 | tos);
	__u16 w1 = bpf_htons(tot);
	__u16 w3 = bpf_htons(0x4000);
	__u16 w4 = (__u16)ttl | (__u16)proto << 8; /* bytes ttl, protocol as stored */

	*(__u16 *)ip = w0;
	ip->tot_len = w1;
	ip->id = 0;
	ip->frag_off = w3;
	*(__u16 *)&ip->ttl = w4;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = ~csum_fold((__u64)w0 + w1 + w3 + w4 + saddr + daddr);
}

static __always_inline void put_ipv6(struct ipv6hdr *ip6, __u8 tos, __u16 plen,
				     __u8 next, __u8 hop, const __u32 *saddr, const __u32 *daddr)
{
	*(__be32 *)ip6 = bpf_htonl(0x60000000 | (__u32)tos << 20);
	ip6->payload_len = bpf_htons(plen);
	ip6->nexthdr = next;
	ip6->hop_limit = hop;
	__builtin_memcpy(&ip6->saddr, saddr, 16);
	__builtin_memcpy(&ip6->daddr, daddr, 16);
}

static __always_inline __u8 ipv6_tc(const struct ipv6hdr *ip6)
{
	const __u8 *b = (const __u8 *)ip6;

	return b[0] << 4 | b[1] >> 4;
}

/* IPv6 flow -> native IPv4 carrier: 20 bytes shorter, L4 stays put. */
static __always_inline enum reason xlat64(struct xdp_md *ctx, struct pkt *p,
					  const struct flow_entry *e)
{
	void *data = p->data;
	struct ipv6hdr *ip6 = data + ETH_LEN;
	struct iphdr *ip = data + ETH_LEN + 20;
	__u8 *l4 = data + L4_6;
	__u64 acc = 0;
	__u8 tos;
	int off;

	if ((void *)(l4 + 8) > p->end)
		return REASON_DROP_HELPER;
	tos = ipv6_tc(ip6);
	if (p->key.proto == IPPROTO_ICMPV6) {
		/* ICMPv4 has no pseudo-header: remove ICMPv6's. */
		acc = csum_sub128(acc, p->key.saddr);
		acc = csum_sub128(acc, p->key.daddr);
		acc = csum_sub32(acc, bpf_htonl(p->l4len));
		acc = csum_sub32(acc, bpf_htonl(IPPROTO_ICMPV6));
		echo_type(l4, 0, &acc);
	} else {
		acc = csum_sub128(acc, p->key.saddr);
		acc = csum_sub128(acc, p->key.daddr);
		acc += e->saddr[0];
		acc += e->daddr[0];
	}
	off = rewrite_ports(p, l4, e, &acc);
	finish_csum(p, l4, off, acc);
	put_ipv4(ip, tos, p->l4len + 20, e->proto, p->ttl - 1, e->saddr[0], e->daddr[0]);
	__builtin_memcpy(data + 20, data, 12);
	*(__be16 *)(data + 32) = bpf_htons(ETH_P_IP);
	if (bpf_xdp_adjust_head(ctx, 20))
		return REASON_DROP_HELPER;
	return REASON_NONE;
}

/* Native IPv4 carrier -> IPv6 flow: 20 bytes longer, L4 stays put. */
static __always_inline enum reason xlat46(struct xdp_md *ctx, struct pkt *p,
					  const struct flow_entry *e)
{
	void *data = p->data;
	void *end = p->end;
	struct iphdr *ip = data + ETH_LEN;
	__u8 *l4 = data + L4_4;
	__u64 acc = 0;
	__u8 tos;
	int off;

	if ((void *)(l4 + 8) > end)
		return REASON_DROP_HELPER;
	tos = ip->tos;
	if (p->key.proto == IPPROTO_ICMP) {
		/* ICMPv6 covers a pseudo-header: add it. */
		acc = pseudo6_sum(e->saddr, e->daddr, p->l4len);
		echo_type(l4, 1, &acc);
	} else {
		acc = csum_sub32(acc, ip->saddr);
		acc = csum_sub32(acc, ip->daddr);
		acc = csum_add128(acc, e->saddr);
		acc = csum_add128(acc, e->daddr);
	}
	off = rewrite_ports(p, l4, e, &acc);
	finish_csum(p, l4, off, acc);
	if (bpf_xdp_adjust_head(ctx, -20))
		return REASON_DROP_HELPER;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + L4_6 > end)
		return REASON_DROP_HELPER;
	__builtin_memcpy(data, data + 20, 12);
	*(__be16 *)(data + 12) = bpf_htons(ETH_P_IPV6);
	put_ipv6(data + ETH_LEN, tos, p->l4len, e->proto, p->ttl - 1, e->saddr, e->daddr);
	return REASON_NONE;
}

/* Any IPv6 payload -> IPv4 + UDP carrier: 12 bytes shorter. The UDP
 * checksum is zero (allowed in IPv4): the payload keeps its own end-to-end
 * integrity and the far end strips the header again. */
static __always_inline enum reason wrap64(struct xdp_md *ctx, struct pkt *p,
					  const struct flow_entry *e)
{
	void *data = p->data;
	struct ipv6hdr *ip6 = data + ETH_LEN;
	struct iphdr *ip = data + 12 + ETH_LEN;
	struct udphdr *uh = data + 12 + ETH_LEN + 20;
	__u8 tos;

	if ((void *)(uh + 1) > p->end)
		return REASON_DROP_HELPER;
	tos = ipv6_tc(ip6);
	uh->source = e->sport;
	uh->dest = e->dport;
	uh->len = bpf_htons(p->l4len + 8);
	uh->check = 0;
	put_ipv4(ip, tos, p->l4len + 28, IPPROTO_UDP, p->ttl - 1, e->saddr[0], e->daddr[0]);
	__builtin_memcpy(data + 12, data, 12);
	*(__be16 *)(data + 24) = bpf_htons(ETH_P_IP);
	if (bpf_xdp_adjust_head(ctx, 12))
		return REASON_DROP_HELPER;
	return REASON_NONE;
}

/* IPv4 + UDP carrier -> IPv6 packet with the entry's next header. */
static __always_inline enum reason unwrap46(struct xdp_md *ctx, struct pkt *p,
					    const struct flow_entry *e)
{
	struct iphdr *ip = p->data + ETH_LEN;
	void *data, *end;
	__u8 tos;

	if ((void *)(ip + 1) > p->end)
		return REASON_DROP_HELPER;
	tos = ip->tos;
	if (bpf_xdp_adjust_head(ctx, -12))
		return REASON_DROP_HELPER;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + L4_6 > end)
		return REASON_DROP_HELPER;
	__builtin_memcpy(data, data + 12, 12);
	*(__be16 *)(data + 12) = bpf_htons(ETH_P_IPV6);
	put_ipv6(data + ETH_LEN, tos, p->l4len - 8, e->proto, p->ttl - 1, e->saddr, e->daddr);
	return REASON_NONE;
}
