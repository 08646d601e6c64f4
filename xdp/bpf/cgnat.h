/* cgnat.h: the relay's carrier-grade NAT44 for its own subscribers
 * (xdp/README.md, CGNAT; the model is session/cgnat, check for check).
 *
 * - relay_sub (the subscriber interface): a subscriber's packet finds its
 *   endpoint-independent mapping in cg_table (cg_table.h), or makes one
 *   under its bucket's lock: a port taken from one of the subscriber's
 *   blocks with an atomic fetch-or on the block's bitmap, the inbound
 *   slot written, then the mapping put in a free way of the bucket (or
 *   the spill hash). To a pool address:port of another mapping it is
 *   hairpinned here, both translations at once.
 * - relay_ext (the Internet side): a packet to a pool address and block
 *   port finds its mapping by index in cg_slots, passes the filter, and is
 *   rewritten to the subscriber. ICMP errors travel with their embedded
 *   packet rewritten (RFC 5508).
 * New mappings never wait for the agent; it is asked for a block when
 * one is nearly full (cg_events) or a subscriber has none with room
 * (the miss ring), and says when to refuse (cg_sub.spent), which the
 * datapath answers with ICMP administratively prohibited. */
#pragma once

#include "common.h"
#include "config.h"
#include "csum.h"
#include "fwd.h"
#include "icmp.h"
#include "maps.h"
#include "martian.h"
#include "miss.h"
#include "nat.h"
#include "parse.h"
#include "reasons.h"
#include "types.h"
#include "cg_pool.h"
#include "cg_ports.h"
#include "cg_refuse.h"

/* The TCP header's flags byte (IPv4, or IPv6 for NAT64). */
static __always_inline __u8 *cg_tcp_flags(const struct pkt *p)
{
	return (__u8 *)p->data + (p->key.family == 4 ? L4_4 : L4_6) + 13;
}

/* The TCP state bits a segment brings (out: from the subscriber). */
static __always_inline __u8 cg_tcp_bits(const struct pkt *p, int out)
{
	__u8 *fl = cg_tcp_flags(p), f, b = 0;

	if (p->key.proto != IPPROTO_TCP || p->icmp_err || (void *)(fl + 1) > p->end)
		return 0;
	f = *fl;
	if (f & 0x02)
		b |= out ? CG_TCP_SYN_OUT : CG_TCP_SYN_IN;
	if (f & 0x01)
		b |= out ? CG_TCP_FIN_OUT : CG_TCP_FIN_IN;
	if (f & 0x04)
		b |= CG_TCP_RST;
	return b;
}

/* A TCP SYN without ACK: the only segment that makes a mapping. */
static __always_inline int cg_syn(const struct pkt *p)
{
	__u8 *fl = cg_tcp_flags(p);

	return (void *)(fl + 1) <= p->end && (*fl & 0x12) == 0x02;
}

/* Note a TCP segment's state bits on its mapping's inbound slot; a new
 * outbound SYN starts them again (a new connection on the mapping).
 * Written only when they change. */
static __always_inline void cg_note(struct cg_in *s, __u8 tcp, int restart)
{
	__u8 t = restart ? tcp : s->tcp | tcp;

	if (t != s->tcp)
		s->tcp = t;
}

/* An inbound slot's inside end: its address (NAT64: the subscriber's
 * index) and port, the low 48 bits of the word. */
#define CG_INSIDE 0xffffffffffffULL

/* Address(-and-port)-dependent filtering: may remote raddr:rport reach
 * the mapping pub:pport whose inbound slot's word is slot? Only if the
 * mapping's inside end, the slot's, sent to it: a permission left by an
 * earlier mapping of the same public port (whose inside end was another)
 * does not pass. (Always, endpoint-independent.) */
static __always_inline int cg_permitted(__u32 pub, __be16 pport, __u8 proto, __u32 raddr, __be16 rport,
					__u64 slot)
{
	struct cg_perm k = {
		.pub = pub, .pport = pport, .proto = proto, .raddr = raddr,
		.rport = cfg_cg_filter == 2 ? rport : 0,
	};
	__u64 *in;

	if (!cfg_cg_filter)
		return 1;
	in = map_lookup(&cg_perms, &k);
	return in && *in == (slot & CG_INSIDE);
}

/* The mapping pub:pport of inside end inside (as its slot holds it)
 * sent to raddr:rport: let its answers in. */
static __always_inline void cg_permit(__u32 pub, __be16 pport, __u8 proto, __u32 raddr, __be16 rport,
				      __u64 inside)
{
	struct cg_perm k = {
		.pub = pub, .pport = pport, .proto = proto, .raddr = raddr,
		.rport = cfg_cg_filter == 2 ? rport : 0,
	};
	__u64 *in;

	if (!cfg_cg_filter)
		return;
	in = map_lookup(&cg_perms, &k);
	if (in && *in == inside)
		return;
	bpf_map_update_elem(&cg_perms, &k, &inside, BPF_ANY);
}

#include "nat64.h" /* NAT64's half: uses the helpers above, used below */

/* What the subscriber interface does with a packet parse left: IPv4
 * the CGNAT cannot translate is dropped, since the stack would forward
 * it with the subscriber's inside source; unless it is for the relay
 * itself or another subscriber's inside address. */
static __always_inline enum reason cg_sub_unparsed(struct pkt *p, enum reason r)
{
	struct ethhdr *eth = p->data;
	struct iphdr *ip = p->data + ETH_LEN;

	if (!cfg_cg_subs || (r != REASON_PASS_FRAGMENT && r != REASON_PASS_IP_OPTIONS &&
			     r != REASON_PASS_ICMP_OTHER && r != REASON_PASS_IPV6_EXT))
		return r;
	if ((void *)(eth + 1) <= p->end && eth->h_proto == bpf_htons(ETH_P_IPV6))
		return cg_unparsed64(p, r);
	if ((void *)(ip + 1) > p->end || eth->h_proto != bpf_htons(ETH_P_IP))
		return r;
	if ((cfg_cg_gw && ip->daddr == cfg_cg_gw) || cg_inside(ip->daddr))
		return r;
	if (r == REASON_PASS_FRAGMENT)
		return REASON_DROP_CGNAT_FRAGMENT;
	if (r == REASON_PASS_IP_OPTIONS)
		return REASON_DROP_CGNAT_OPTIONS;
	return REASON_DROP_CGNAT_PROTO;
}

/* The same on the Internet side: a fragment to a pool address that is
 * not the carrier address (whose fragments the stack takes, as before). */
static __always_inline enum reason cg_ext_unparsed(struct pkt *p, enum reason r)
{
	struct ethhdr *eth = p->data;
	struct iphdr *ip = p->data + ETH_LEN;

	if (!cfg_cg_subs || r != REASON_PASS_FRAGMENT)
		return r;
	if ((void *)(ip + 1) > p->end || eth->h_proto != bpf_htons(ETH_P_IP))
		return r;
	if (cg_pool_addr(ip->daddr) && ip->daddr != cfg_carrier_addr)
		return REASON_DROP_CGNAT_FRAGMENT;
	return r;
}

/* The outer IPv4 source (an ICMP error's key is the packet it quotes). */
static __always_inline __u32 cg_outer_src(const struct pkt *p)
{
	struct iphdr *ip = p->data + ETH_LEN;

	if ((void *)(ip + 1) > p->end)
		return 0; /* parse saw more: cannot happen */
	return ip->saddr;
}

/* The cg_slots offset of an Internet packet for a mapping, or -1: IPv4 TCP,
 * UDP, ICMP echo reply or an error about them, to a pool address and
 * block port (an echo request's identifier is no destination port). */
static __always_inline long cg_inbound_port(const struct pkt *p)
{
	if (p->key.family != 4 || cg_plane(p->key.proto) < 0)
		return -1;
	return cg_pool_port(p->key.daddr[0], p->key.dport);
}

/* Internet -> subscriber. */
static __always_inline int cg_inbound(struct xdp_md *ctx, struct pkt *p, long off)
{
	int pl = cg_plane(p->key.proto);
	struct flow_entry e = {};
	struct cg_in *s;
	enum reason r;
	__u64 v;

	s = cg_slot(pl, off);
	if (!s)
		return verdict(REASON_DROP_CGNAT_NO_MAPPING);
	v = *(volatile __u64 *)s; /* whole, as cg_new writes it */
	if (!((v >> 48) & CG_USED))
		return verdict(REASON_DROP_CGNAT_NO_MAPPING);
	r = martian_src(p);
	if (r != REASON_NONE)
		return verdict(r);
	if (!((v >> 48) & CG_EXPLICIT) &&
	    !cg_permitted(p->key.daddr[0], p->key.dport, p->key.proto, p->key.saddr[0], p->key.sport, v))
		return verdict(REASON_DROP_CGNAT_FILTERED);
	if (p->ttl <= 1)
		return verdict(REASON_PASS_TTL);
	if ((v >> 48) & CG_V6)
		return cg_inbound64(ctx, p, pl, off, s, v);
	cg_note(s, cg_tcp_bits(p, 0), 0);
	e.saddr[0] = p->key.saddr[0];
	e.sport = p->key.sport;
	e.daddr[0] = (__u32)v;
	e.dport = (__be16)(v >> 32);
	r = p->icmp_err ? err_napt_src(p, &e, cg_outer_src(p)) : napt44(p, &e);
	if (r != REASON_NONE)
		return verdict(r);
	return forward(ctx, 1);
}

/* Subscriber -> Internet, or -> another subscriber's mapping (hairpin). */
static __always_inline int cg_sub_process(struct xdp_md *ctx)
{
	struct flow_entry e = {};
	struct pkt p = {};
	struct cg_out o;
	struct cg_key k = {};
	__u16 *ep = NULL;
	__u32 dst;
	enum reason r;
	long hp = -1;
	int pl, fresh = 0;
	__u8 tcp;

	r = parse(ctx, &p);
	if (r != REASON_NONE)
		return verdict(cg_sub_unparsed(&p, r));
	if (!cfg_cg_subs)
		return verdict(REASON_PASS_NOT_OURS);
	if (p.key.family != 4)
		return cg_sub64(ctx, &p);
	dst = p.key.daddr[0];
	if ((cfg_cg_gw && dst == cfg_cg_gw) || cg_inside(dst))
		return verdict(REASON_PASS_LOCAL);
	r = martian_dst(&p);
	if (r != REASON_NONE)
		return verdict(r);
	if (!cg_inside(cg_outer_src(&p)))
		return verdict(REASON_DROP_CGNAT_SOURCE);
	pl = cg_plane(p.key.proto);
	if (pl < 0)
		return verdict(REASON_DROP_CGNAT_PROTO);
	if (cg_pool_addr(dst)) {
		/* Hairpin: TCP and UDP to another mapping. The rest to a pool
		 * address is for the relay itself, untranslated. */
		if (p.icmp_err)
			return verdict(REASON_DROP_CGNAT_PROTO);
		if (pl < 2)
			hp = cg_pool_port(dst, p.key.dport);
		if (hp < 0)
			return verdict(REASON_PASS_LOCAL);
	}
	if (pl == 2 && !p.echo_rq && !p.icmp_err)
		return verdict(REASON_DROP_CGNAT_NO_MAPPING); /* an echo reply: no inbound echo is let in */
	if (p.ttl <= 1)
		return verdict(REASON_PASS_TTL);
	k.addr = p.key.saddr[0];
	k.port = p.key.sport;
	k.proto = p.key.proto;
	tcp = cg_tcp_bits(&p, 1);
	if (!cg_lookup(&k, &o, &ep)) {
		if (p.icmp_err)
			return verdict(REASON_DROP_CGNAT_NO_MAPPING);
		if (pl == 0 && !cg_syn(&p))
			return verdict(REASON_DROP_CGNAT_NOT_SYN);
		r = cg_new(&k, pl, tcp, &o, &fresh, &ep);
		if (r == REASON_CGNAT_NO_BLOCK) {
			r = send_miss(ctx, ROLE_RELAY_SUB, &p);
			return verdict(r == REASON_MISS ? REASON_CGNAT_NO_BLOCK : r);
		}
		if (r == REASON_CGNAT_REFUSED)
			return cg_refuse(ctx, &p);
		if (r != REASON_NONE)
			return verdict(r);
	}
	if (!fresh && ep && o.epoch != (__u16)sw_cg_epoch)
		*ep = sw_cg_epoch;
	if (!p.icmp_err)
		cg_permit(o.addr, o.port, p.key.proto, dst, p.key.dport, (__u64)k.addr | (__u64)k.port << 32);
	if (tcp && !fresh) {
		long off = cg_pool_port(o.addr, o.port);
		struct cg_in *s = off >= 0 ? cg_slot(pl, off) : NULL;

		if (s)
			cg_note(s, tcp, cg_syn(&p));
	}
	e.saddr[0] = o.addr;
	e.sport = o.port;
	e.daddr[0] = dst;
	e.dport = p.key.dport;
	if (hp >= 0) {
		struct cg_in *b = cg_slot(pl, hp);
		__u64 v = b ? *(volatile __u64 *)b : 0; /* whole, as cg_new writes it */

		if (!((v >> 48) & CG_USED))
			return verdict(REASON_DROP_CGNAT_NO_MAPPING);
		if ((v >> 48) & CG_V6)
			return verdict(REASON_DROP_NAT64_HAIRPIN); /* no 4 -> 6 between subscribers */
		if (!((v >> 48) & CG_EXPLICIT) && !cg_permitted(dst, p.key.dport, p.key.proto, o.addr, o.port, v))
			return verdict(REASON_DROP_CGNAT_FILTERED);
		cg_note(b, cg_tcp_bits(&p, 0), 0);
		e.daddr[0] = (__u32)v;
		e.dport = (__be16)(v >> 32);
	}
	r = p.icmp_err ? err_napt(&p, &e) : napt44(&p, &e);
	if (r != REASON_NONE)
		return verdict(r);
	return forward(ctx, 1);
}
