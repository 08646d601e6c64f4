/* nat64.h: the relay's CGNAT for IPv6-only subscribers, stateful NAT64
 * (RFC 6146) on the same pool and blocks as NAT44 (cgnat.h; model
 * session/cgnat/nat64.go, check for check).
 *
 * - relay_sub: IPv6 from the inside IPv6 prefix to the NAT64 prefix (a
 *   /96, RFC 6052) takes the subscriber's endpoint-independent mapping
 *   in cg_mappings6, or makes one from a port of its blocks (cg_new_for),
 *   and is translated to IPv4 by the carriers' translator (xlat64, err64:
 *   RFC 7915), from the mapping's public address and port to the IPv4
 *   address in the destination's last 32 bits.
 * - relay_ext: IPv4 to a slot marked CG_V6 is translated back (xlat46,
 *   err46) from that IPv4 address in the NAT64 prefix to the subscriber:
 *   its /64 from the slot's index, its interface ID from cg_slots6.
 * A subscriber is a /64 (xdp/README.md, NAT64): its blocks, quota and
 * log records cover every address in it. */
#pragma once

#include "common.h"
#include "config.h"
#include "csum.h"
#include "fwd.h"
#include "icmp.h"
#include "maps.h"
#include "miss.h"
#include "parse.h"
#include "reasons.h"
#include "translate.h"
#include "types.h"
#include "cg_pool.h"
#include "cg_ports.h"
#include "cg_refuse.h"

/* a (four words, network order) is in the NAT64 prefix. */
static __always_inline int cg_pfx64(const __u32 *a)
{
	return cfg_cg6_subs && a[0] == cfg_cg6_pfx[0] && a[1] == cfg_cg6_pfx[1] &&
	       a[2] == cfg_cg6_pfx[2];
}

/* The first 64 bits of a, as a number. */
static __always_inline __u64 cg_hi64(const __u32 *a)
{
	return (__u64)bpf_ntohl(a[0]) << 32 | bpf_ntohl(a[1]);
}

/* a is inside the inside IPv6 prefix. */
static __always_inline int cg_inside6(const __u32 *a)
{
	return cfg_cg6_subs && cg_hi64(a) - cfg_cg6_net < cfg_cg6_subs;
}

/* The IPv4 protocol an IPv6 one maps to (ICMPv6 echo: ICMP), 0 if none. */
static __always_inline __u8 cg_proto4(__u8 proto)
{
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP)
		return proto;
	return proto == IPPROTO_ICMPV6 ? IPPROTO_ICMP : 0;
}

/* Whether NAT64 reaches IPv4 address d (network order): not a martian,
 * not the pool (no hairpin between NAT64 and the pool's mappings), not
 * the subscribers' inside prefix or the gateway, and under the
 * well-known prefix not a private or shared address (RFC 6052 3.1:
 * RFC 1918 and 100.64.0.0/10; the documentation ranges stay reachable,
 * the lab lives in them). */
static __always_inline enum reason cg_dst64(__u32 d)
{
	__u8 b0 = d & 0xff, b1 = (d >> 8) & 0xff;

	if (b0 == 0 || b0 == 127 || b0 >= 224 || (b0 == 169 && b1 == 254))
		return REASON_DROP_MARTIAN_DST;
	if (cg_pool_addr(d))
		return REASON_DROP_NAT64_HAIRPIN;
	if (cg_inside(d) || (cfg_cg_gw && d == cfg_cg_gw))
		return REASON_DROP_NAT64_DST;
	if (cfg_cg6_pfx[0] == bpf_htonl(WKP_HI) && !cfg_cg6_pfx[1] && !cfg_cg6_pfx[2] &&
	    (b0 == 10 || (b0 == 172 && (b1 & 0xf0) == 16) || (b0 == 192 && b1 == 168) ||
	     (b0 == 100 && (b1 & 0xc0) == 64)))
		return REASON_DROP_NAT64_DST;
	return REASON_NONE;
}

/* IPv6 that parse left, to the NAT64 prefix: dropped, named. */
static __always_inline enum reason cg_unparsed64(struct pkt *p, enum reason r)
{
	struct ipv6hdr *ip6 = p->data + ETH_LEN;

	if ((void *)(ip6 + 1) > p->end || !cg_pfx64((__u32 *)&ip6->daddr))
		return r;
	if (r == REASON_PASS_FRAGMENT)
		return REASON_DROP_CGNAT_FRAGMENT;
	if (r == REASON_PASS_IPV6_EXT)
		return REASON_DROP_NAT64_EXT;
	if (r == REASON_PASS_ICMP_OTHER)
		return REASON_DROP_CGNAT_PROTO;
	return r;
}

#define CG_REFUSE6_LEN (ETH_LEN + 40 + 8 + 48) /* answer: IPv6, ICMPv6, the IPv6 header and 8 bytes it is about */

/* cg_refuse for NAT64: ICMPv6 destination unreachable, communication
 * administratively prohibited (type 1 code 1), from the refused packet's
 * destination (the server's address in the NAT64 prefix: the relay has
 * no IPv6 address of its own there), under the same rate bound. The
 * frame grows by 48 bytes in front, which puts the refused packet's
 * header where the quote goes, and is cut to 110. */
static __always_inline int cg_refuse6(struct xdp_md *ctx, struct pkt *p)
{
	void *data = p->data, *end;
	struct ipv6hdr *oip = data + ETH_LEN;
	__u32 to[4], from[4], *w;
	__u8 mac[12], *ic;
	__u64 acc;
	int cut;

	if (!cg_refuse_allowed())
		return verdict(REASON_DROP_CGNAT_REFUSED_RATE);
	if ((void *)oip + 48 > p->end)
		return verdict(REASON_DROP_HELPER);
	__builtin_memcpy(mac, data + 6, 6); /* to the sender */
	__builtin_memcpy(mac + 6, data, 6);
	__builtin_memcpy(to, &oip->saddr, 16);
	__builtin_memcpy(from, &oip->daddr, 16);
	if (bpf_xdp_adjust_head(ctx, -48))
		return verdict(REASON_DROP_HELPER);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + CG_REFUSE6_LEN > end)
		return verdict(REASON_DROP_HELPER);
	cut = (end - data) - CG_REFUSE6_LEN;
	__builtin_memcpy(data, mac, 12);
	*(__be16 *)(data + 12) = bpf_htons(ETH_P_IPV6);
	put_ipv6(data + ETH_LEN, 0, 8 + 48, IPPROTO_ICMPV6, 64, from, to);
	ic = data + ETH_LEN + 40;
	ic[0] = 1;
	ic[1] = 1;
	*(__u16 *)(ic + 2) = 0;
	*(__u32 *)(ic + 4) = 0;
	w = (__u32 *)(ic + 8);
	acc = pseudo6_sum(from, to, 8 + 48);
	acc += (__u16)(1 | 1 << 8); /* type and code as stored (raw) */
	acc = csum_add_words(acc, w, 10);
	acc += (__u64)w[10] + w[11];
	*(__u16 *)(ic + 2) = ~csum_fold(acc);
	if (cut && bpf_xdp_adjust_tail(ctx, -cut))
		return verdict(REASON_DROP_HELPER);
	count_reason(REASON_CGNAT_REFUSED);
	return XDP_TX;
}

/* An IPv4 packet whose IPv6 form would not fit the subscriber link, DF
 * set, answered as a router would (RFC 7915 4.1; RFC 1191): ICMP
 * destination unreachable, fragmentation needed, next-hop MTU mtu, from
 * the pool address it came to, quoting its header and 8 bytes, under
 * the admin-prohibited answers' bound (cg_icmp4_unreach). */
static __always_inline int cg_too_big(struct xdp_md *ctx, struct pkt *p, __u16 mtu)
{
	return cg_icmp4_unreach(ctx, p, 4, mtu, 0, REASON_NAT64_TOO_BIG);
}

/* Internet -> IPv6-only subscriber: a slot marked CG_V6 (word v, at
 * plane pl, offset off), past cg_inbound's checks. */
static __always_inline int cg_inbound64(struct xdp_md *ctx, struct pkt *p, int pl, long off,
					struct cg_in *s, __u64 v)
{
	__u32 idx = (__u32)pl * cfg_cg_pool_n * cg_per_addr() + (__u32)off;
	struct flow_entry e = {};
	__u64 *iid, net;
	struct udphdr *uh = p->data + L4_4;
	struct iphdr *ip = p->data + ETH_LEN;
	enum reason r;

	if (p->key.proto == IPPROTO_UDP && !p->icmp_err) {
		if ((void *)(uh + 1) > p->end)
			return verdict(REASON_DROP_HELPER);
		if (!uh->check)
			return verdict(REASON_DROP_UDP_ZERO_CSUM); /* IPv6 needs one (RFC 6146 3.4: may drop) */
	}
	if ((void *)(ip + 1) > p->end)
		return verdict(REASON_DROP_HELPER);
	/* 20 bytes more as IPv6, an error 40 (its quote grows too). */
	if ((__u32)bpf_ntohs(ip->tot_len) + (p->icmp_err ? 40 : 20) > cfg_cg6_mtu) {
		if (p->icmp_err || !(ip->frag_off & bpf_htons(0x4000)))
			return verdict(REASON_DROP_NAT64_TOO_BIG);
		return cg_too_big(ctx, p, cfg_cg6_mtu - 20);
	}
	iid = map_lookup(&cg_slots6, &idx);
	if (!iid)
		return verdict(REASON_DROP_HELPER);
	cg_note(s, cg_tcp_bits(p, 0), 0);
	net = cfg_cg6_net + (__u32)v;
	e.action = ACT_XLAT46;
	e.proto = p->key.proto == IPPROTO_ICMP ? IPPROTO_ICMPV6 : p->key.proto;
	e.saddr[0] = cfg_cg6_pfx[0];
	e.saddr[1] = cfg_cg6_pfx[1];
	e.saddr[2] = cfg_cg6_pfx[2];
	e.saddr[3] = p->key.saddr[0];
	e.sport = p->key.sport;
	e.daddr[0] = bpf_htonl(net >> 32);
	e.daddr[1] = bpf_htonl((__u32)net);
	*(__u64 *)&e.daddr[2] = *iid;
	e.dport = (__be16)(v >> 32);
	r = p->icmp_err ? err46(ctx, p, &e, cfg_cg6_pfx[0], cfg_cg6_pfx[1], cfg_cg6_pfx[2]) :
			  xlat46(ctx, p, &e);
	if (r != REASON_NONE)
		return verdict(r);
	return forward(ctx, 0);
}

/* IPv6-only subscriber -> Internet, through its NAT64 mapping. */
static __always_inline int cg_sub64(struct xdp_md *ctx, struct pkt *p)
{
	struct ipv6hdr *ip6 = p->data + ETH_LEN;
	struct udphdr *uh = p->data + L4_6;
	struct flow_entry e = {};
	struct cg_key6 k = {};
	struct cg_out *o, nv;
	__u16 *ep = NULL;
	__u32 dst;
	enum reason r;
	int pl, fresh = 0;
	__u8 proto, tcp;

	if (!cg_pfx64(p->key.daddr))
		return verdict(REASON_PASS_NOT_OURS);
	if ((void *)(ip6 + 1) > p->end)
		return verdict(REASON_DROP_HELPER);
	if (!cg_inside6((__u32 *)&ip6->saddr))
		return verdict(REASON_DROP_NAT64_SOURCE);
	dst = p->key.daddr[3];
	r = cg_dst64(dst);
	if (r != REASON_NONE)
		return verdict(r);
	proto = cg_proto4(p->key.proto);
	pl = cg_plane(proto);
	if (pl < 0)
		return verdict(REASON_DROP_CGNAT_PROTO);
	if (pl == 2 && !p->echo_rq && !p->icmp_err)
		return verdict(REASON_DROP_CGNAT_NO_MAPPING); /* an echo reply: no inbound echo is let in */
	if (p->ttl <= 1)
		return verdict(REASON_PASS_TTL);
	if (proto == IPPROTO_UDP && !p->icmp_err) {
		if ((void *)(uh + 1) > p->end)
			return verdict(REASON_DROP_HELPER);
		if (!uh->check)
			return verdict(REASON_DROP_UDP_ZERO_CSUM);
	}
	__builtin_memcpy(k.addr, p->key.saddr, 16);
	k.port = p->key.sport;
	k.proto = proto;
	tcp = cg_tcp_bits(p, 1);
	o = map_lookup(&cg_mappings6, &k);
	if (!o) {
		if (p->icmp_err)
			return verdict(REASON_DROP_CGNAT_NO_MAPPING);
		if (pl == 0 && !cg_syn(p))
			return verdict(REASON_DROP_CGNAT_NOT_SYN);
		if (!cg_inside6(k.addr))
			return verdict(REASON_DROP_NAT64_SOURCE); /* cannot happen: the outer source was */
		r = cg_new_for(cfg_cg_subs + (__u32)(cg_hi64(k.addr) - cfg_cg6_net), NULL, &k, NULL, pl,
			       tcp, &nv, &fresh, &ep);
		if (r == REASON_CGNAT_NO_BLOCK) {
			r = send_miss(ctx, ROLE_RELAY_SUB, p);
			return verdict(r == REASON_MISS ? REASON_CGNAT_NO_BLOCK : r);
		}
		if (r == REASON_CGNAT_REFUSED)
			return cg_refuse6(ctx, p);
		if (r != REASON_NONE)
			return verdict(r);
		o = &nv;
	} else if (o->epoch != (__u16)sw_cg_epoch) {
		o->epoch = sw_cg_epoch;
	}
	if (!p->icmp_err)
		cg_permit(o->addr, o->port, proto, dst, p->key.dport,
			  (__u64)(__u32)(cg_hi64(k.addr) - cfg_cg6_net) | (__u64)k.port << 32); /* as cg_new_for's slot */
	if (tcp && !fresh) {
		long off = cg_pool_port(o->addr, o->port);
		struct cg_in *s = off >= 0 ? cg_slot(pl, off) : NULL;

		if (s)
			cg_note(s, tcp, cg_syn(p));
	}
	e.action = ACT_XLAT64;
	e.proto = proto;
	e.saddr[0] = o->addr;
	e.sport = o->port;
	e.daddr[0] = dst;
	e.dport = p->key.dport;
	r = p->icmp_err ? err64(ctx, p, &e) : xlat64(ctx, p, &e);
	if (r != REASON_NONE)
		return verdict(r);
	return forward(ctx, 1);
}
