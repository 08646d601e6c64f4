/* parse.h: bounded parsing of Ethernet + IPv4/IPv6 + TCP/UDP/ICMP echo into
 * a flow key. Only plain headers are parsed: IPv4 options, IPv6 extension
 * headers and fragments pass to the stack, malformed packets (a TCP data
 * offset that does not fit among them) drop. Order
 * of checks = session/xlat parse (the model). */
#pragma once

#include "common.h"
#include "csum.h"
#include "types.h"
#include "reasons.h"

#define ETH_LEN 14
#define IP4_OFF ETH_LEN
#define L4_4 (ETH_LEN + 20)   /* L4 offset behind a plain IPv4 header */
#define L4_6 (ETH_LEN + 40)   /* L4 offset behind a plain IPv6 header */

#define ICMP_ECHO 8
#define ICMP_ECHOREPLY 0
#define ICMP6_ECHO 128
#define ICMP6_ECHOREPLY 129

/* A parsed packet: bounds, lookup key and what translation needs. */
struct pkt {
	void *data;
	void *end;
	struct flow_key key;
	__u32 len;    /* frame length */
	__u16 l4len;  /* L4 length from the IP header */
	__u8 ttl;
	__u8 echo_rq; /* ICMP(v6) echo request: identifier is sport */
	__u8 icmp_err; /* ICMP error: key is its embedded packet's, reversed */
};

/* An ICMP error unmap translates (IPv4 3 and 11, ICMPv6 1 to 3) about a
 * plain TCP, UDP or ICMP echo packet: key it by the embedded packet's
 * tuple reversed, the key of packets going where the error goes. */
static __always_inline enum reason parse_icmp_err(struct pkt *p, __u8 *ih, int v4)
{
	void *end = p->end;
	__u8 t = ih[0], proto, icmp, req, rep;
	__u8 *e = ih + 8, *el4;
	__be16 sport = 0, dport = 0;

	if (v4) {
		if (t != 3 && t != 11)
			return REASON_PASS_ICMP_OTHER;
		if (p->l4len < 8 + 20 + 8 || (void *)(e + 28) > end)
			return REASON_PASS_ICMP_OTHER;
		if (e[0] != 0x45 || (*(__be16 *)(e + 6) & bpf_htons(0x1fff)) ||
		    bpf_ntohs(*(__be16 *)(e + 2)) < 20)
			return REASON_PASS_ICMP_OTHER;
		proto = e[9];
		p->key.saddr[0] = *(__u32 *)(e + 16);
		p->key.daddr[0] = *(__u32 *)(e + 12);
		el4 = e + 20;
		icmp = IPPROTO_ICMP;
		req = ICMP_ECHO;
		rep = ICMP_ECHOREPLY;
	} else {
		if (t < 1 || t > 3)
			return REASON_PASS_ICMP_OTHER;
		if (p->l4len < 8 + 40 + 8 || (void *)(e + 48) > end)
			return REASON_PASS_ICMP_OTHER;
		if ((e[0] >> 4) != 6)
			return REASON_PASS_ICMP_OTHER;
		proto = e[6];
		__builtin_memcpy(p->key.saddr, e + 24, 16);
		__builtin_memcpy(p->key.daddr, e + 8, 16);
		el4 = e + 40;
		icmp = IPPROTO_ICMPV6;
		req = ICMP6_ECHO;
		rep = ICMP6_ECHOREPLY;
	}
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		sport = *(__be16 *)el4;
		dport = *(__be16 *)(el4 + 2);
	} else if (proto == icmp && el4[0] == req) {
		sport = *(__be16 *)(el4 + 4);
	} else if (proto == icmp && el4[0] == rep) {
		dport = *(__be16 *)(el4 + 4);
	} else {
		return REASON_PASS_ICMP_OTHER;
	}
	p->key.proto = proto;
	p->key.sport = dport;
	p->key.dport = sport;
	p->icmp_err = 1;
	return REASON_NONE;
}

/* Ports of TCP/UDP, identifier of ICMP echo; other protocols have none. */
static __always_inline enum reason parse_l4(struct pkt *p, void *l4, __u8 icmp,
					    __u8 echo_rq, __u8 echo_rep)
{
	void *end = p->end;
	__u8 proto = p->key.proto;

	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		__u16 hl;

		if (p->l4len < 20 || (void *)(th + 1) > end)
			return REASON_DROP_TRUNC_L4;
		/* The header is as long as its data offset says (x 4 bytes).
		 * Under 20, or past the IP packet (l4len, itself inside the
		 * frame), it is no segment any receiver takes (RFC 9293 3.1;
		 * Linux discards it). Dropped here, before any lookup, in
		 * every role, as a short L4 header is: at the edge and the
		 * relay's Internet side it would be translated onto or off a
		 * carrier (or, a miss, go to the agent to open a flow), at
		 * the relay's subscriber side a SYN would make a CGNAT
		 * mapping (a port of the subscriber's quota) and a pass would
		 * leak the inside source. Not ours (the router's own, or the
		 * stack's to forward) it would only be discarded there or by
		 * its receiver: a pass gains nothing. Only this byte is read,
		 * never the options. An ICMP error's quoted header is not
		 * checked (parse_icmp_err): a quote may end 8 bytes into it. */
		hl = (((__u8 *)th)[12] >> 4) * 4;
		if (hl < 20 || hl > p->l4len)
			return REASON_DROP_BAD_TCP_OFFSET;
		p->key.sport = th->source;
		p->key.dport = th->dest;
		return REASON_NONE;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if (p->l4len < 8 || (void *)(uh + 1) > end)
			return REASON_DROP_TRUNC_L4;
		if (bpf_ntohs(uh->len) != p->l4len)
			return REASON_DROP_BAD_LEN;
		p->key.sport = uh->source;
		p->key.dport = uh->dest;
		return REASON_NONE;
	}
	if (proto == icmp) {
		__u8 *ih = l4;

		if (p->l4len < 8 || (void *)(ih + 8) > end)
			return REASON_DROP_TRUNC_L4;
		if (ih[0] == echo_rq) {
			p->key.sport = *(__be16 *)(ih + 4);
			p->echo_rq = 1;
		} else if (ih[0] == echo_rep) {
			p->key.dport = *(__be16 *)(ih + 4);
		} else {
			return parse_icmp_err(p, ih, icmp == IPPROTO_ICMP);
		}
	}
	return REASON_NONE;
}

static __always_inline enum reason parse4(struct pkt *p)
{
	struct iphdr *ip = p->data + IP4_OFF;
	__u8 vihl;
	__u16 tot;

	if ((void *)(ip + 1) > p->end)
		return REASON_DROP_TRUNC_L3;
	vihl = *(__u8 *)ip;
	if ((vihl >> 4) != 4 || (vihl & 0xf) < 5)
		return REASON_DROP_BAD_IP;
	if ((vihl & 0xf) > 5)
		return REASON_PASS_IP_OPTIONS;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < 20 || (void *)ip + tot > p->end)
		return REASON_DROP_BAD_LEN;
	if (ipv4_sum(ip) != 0xffff)
		return REASON_DROP_BAD_CSUM;
	if (ip->frag_off & bpf_htons(0x3fff))
		return REASON_PASS_FRAGMENT;
	if (((__u8 *)&ip->daddr)[0] >= 224)
		return REASON_PASS_LOCAL; /* multicast, reserved, broadcast */
	p->ttl = ip->ttl;
	p->l4len = tot - 20;
	p->key.family = 4;
	p->key.proto = ip->protocol;
	/* Whole words, the upper halves zero: the flow table reads the key
	 * in 64-bit words, and a load over a narrower store just made cannot
	 * be served from the store buffer (it stalled IPv4 lookups ~5 ns). */
	*(__u64 *)p->key.saddr = ip->saddr;
	*(__u64 *)p->key.daddr = ip->daddr;
	return parse_l4(p, p->data + L4_4, IPPROTO_ICMP, ICMP_ECHO, ICMP_ECHOREPLY);
}

static __always_inline enum reason parse6(struct pkt *p)
{
	struct ipv6hdr *ip6 = p->data + IP4_OFF;
	__u8 *dst = (__u8 *)&ip6->daddr;
	__u16 plen;

	if ((void *)(ip6 + 1) > p->end)
		return REASON_DROP_TRUNC_L3;
	if ((*(__u8 *)ip6 >> 4) != 6)
		return REASON_DROP_BAD_IP;
	plen = bpf_ntohs(ip6->payload_len);
	if ((void *)(ip6 + 1) + plen > p->end)
		return REASON_DROP_BAD_LEN;
	if (dst[0] == 0xff || (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80))
		return REASON_PASS_LOCAL; /* multicast, link-local */
	switch (ip6->nexthdr) {
	case 44:
		return REASON_PASS_FRAGMENT;
	case 0: case 43: case 51: case 60: case 135: case 139: case 140:
	case 253: case 254:
		return REASON_PASS_IPV6_EXT;
	}
	p->ttl = ip6->hop_limit;
	p->l4len = plen;
	p->key.family = 6;
	p->key.proto = ip6->nexthdr;
	__builtin_memcpy(p->key.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->key.daddr, &ip6->daddr, 16);
	return parse_l4(p, p->data + L4_6, IPPROTO_ICMPV6, ICMP6_ECHO, ICMP6_ECHOREPLY);
}

/* The key's first 8 bytes (family, proto, ports) were stored field by
 * field; store them again as one word. The hash reads its key in 32-bit
 * words, and a load over several narrower stores cannot be served from
 * the store buffer: it waits until they reach the cache. */
static __always_inline void seal_key(struct flow_key *k)
{
	*(__u64 *)k = (__u64)k->family | (__u64)k->proto << 8 |
		      (__u64)k->sport << 16 | (__u64)k->dport << 32;
}

static __always_inline enum reason parse(struct xdp_md *ctx, struct pkt *p)
{
	struct ethhdr *eth;
	enum reason r;

	p->data = (void *)(long)ctx->data;
	p->end = (void *)(long)ctx->data_end;
	p->len = p->end - p->data;
	eth = p->data;
	if ((void *)(eth + 1) > p->end)
		return REASON_PASS_NOT_IP;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		r = parse4(p);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		r = parse6(p);
	else
		return REASON_PASS_NOT_IP;
	if (r == REASON_NONE)
		seal_key(&p->key);
	return r;
}
