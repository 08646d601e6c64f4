/* cgnat.h: the relay's carrier-grade NAT44 for its own subscribers
 * (xdp/README.md, CGNAT; the model is session/cgnat, check for check).
 *
 * - relay_sub (the subscriber interface): a subscriber's packet finds its
 *   endpoint-independent mapping in cg_mappings, or makes one: a port taken
 *   from one of the subscriber's blocks with an atomic fetch-or on the
 *   block's bitmap, the inbound slot written, then the mapping inserted
 *   with BPF_NOEXIST (a CPU that loses the race gives its port back and
 *   takes the winner's). To a pool address:port of another mapping it is
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

/* A protocol's port space: 0 TCP, 1 UDP, 2 ICMP (echo identifiers); -1. */
static __always_inline int cg_plane(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 0;
	case IPPROTO_UDP:
		return 1;
	case IPPROTO_ICMP:
		return 2;
	}
	return -1;
}

/* a (network order) is a subscriber's: inside the inside prefix. */
static __always_inline int cg_inside(__u32 a)
{
	return cfg_cg_subs && bpf_ntohl(a) - cfg_cg_in_net < cfg_cg_subs;
}

/* a is an address of the subscribers' pool. */
static __always_inline int cg_pool_addr(__u32 a)
{
	return cfg_cg_subs && bpf_ntohl(a) - cfg_cg_pool < cfg_cg_pool_n;
}

/* Ports of the blocks on each pool address. */
static __always_inline __u32 cg_per_addr(void)
{
	return cfg_cg_nblk << cfg_cg_blk_bits;
}

/* The offset of a pool address:port in a plane of cg_slots, or -1 when it
 * is not a block port of the pool. */
static __always_inline long cg_pool_port(__u32 a, __be16 port)
{
	__u32 i = bpf_ntohl(a) - cfg_cg_pool, n = bpf_ntohs(port);

	if (!cfg_cg_subs || i >= cfg_cg_pool_n || n < cfg_cg_port_lo ||
	    n - cfg_cg_port_lo >= cg_per_addr())
		return -1;
	return i * cg_per_addr() + n - cfg_cg_port_lo;
}

static __always_inline struct cg_in *cg_slot(int plane, long off)
{
	__u32 i = (__u32)plane * cfg_cg_pool_n * cg_per_addr() + (__u32)off;

	return map_lookup(&cg_slots, &i);
}

/* The TCP state bits a segment brings (out: from the subscriber). */
static __always_inline __u8 cg_tcp_bits(const struct pkt *p, int out)
{
	__u8 *fl = p->data + L4_4 + 13, f, b = 0;

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
	__u8 *fl = p->data + L4_4 + 13;

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

/* The lowest set bit's index of x (a power of two). */
static __always_inline __u32 cg_bit(__u64 x)
{
	__u32 n = 0;

	if (!(x & 0xffffffffULL)) {
		n += 32;
		x >>= 32;
	}
	if (!(x & 0xffff)) {
		n += 16;
		x >>= 16;
	}
	if (!(x & 0xff)) {
		n += 8;
		x >>= 8;
	}
	if (!(x & 0xf)) {
		n += 4;
		x >>= 4;
	}
	if (!(x & 0x3)) {
		n += 2;
		x >>= 2;
	}
	if (!(x & 0x1))
		n += 1;
	return n;
}

/* Take a free port of block b in plane pl: the first free one at or after
 * the hint, cyclically, claimed by an atomic fetch-or so two CPUs never
 * take the same bit (the loser of a race looks again, once per word).
 * The hint then points past it, so a port just given back is not taken
 * again at once. Returns the port's offset in the block, or -1. */
static __always_inline long cg_take(struct cg_block *b, int pl)
{
	__u32 size = 1U << cfg_cg_blk_bits, nw = size >> 6, start, sw, sb;

	if (pl < 0 || pl >= CG_PLANES || nw == 0 || nw > CG_BLOCK_WORDS)
		return -1;
	start = b->hint[pl] & (size - 1);
	sw = start >> 6;
	sb = start & 63;
	for (__u32 i = 0; i <= CG_BLOCK_WORDS; i++) {
		__u32 wi = (sw + i) & (nw - 1) & (CG_BLOCK_WORDS - 1);
		__u64 mask = ~0ULL;

		if (i > nw)
			break;
		if (i == 0)
			mask <<= sb;
		else if (i == nw)
			mask = sb ? (1ULL << sb) - 1 : 0; /* the first word's low part, last */
		for (int t = 0; t < 2; t++) {
			__u64 free = ~b->bits[pl][wi] & mask, bit, old;

			if (!free)
				break;
			bit = free & -free;
			old = __sync_fetch_and_or(&b->bits[pl][wi], bit);
			if (!(old & bit)) {
				__u32 pos = wi * 64 + cg_bit(bit);

				b->hint[pl] = pos + 1;
				return pos;
			}
		}
	}
	return -1;
}

/* Tell the agent a block is nearly full. A full ring loses the event;
 * the agent's sweep reads the blocks' counts too. */
static __always_inline void cg_event(__u32 sub, __u32 block, __u32 used, int pl)
{
	struct cg_event *ev = bpf_ringbuf_reserve(&cg_events, sizeof(*ev), 0);

	if (!ev)
		return;
	ev->sub = sub;
	ev->block = block;
	ev->used = used;
	ev->kind = CG_EV_WARN;
	ev->plane = pl;
	ev->pad = 0;
	bpf_ringbuf_submit(ev, 0);
}

/* Give a port taken by cg_take back. */
static __always_inline void cg_give(struct cg_block *b, int pl, long pos)
{
	if (pl < 0 || pl >= CG_PLANES)
		return;
	__sync_fetch_and_and(&b->bits[pl][(pos >> 6) & (CG_BLOCK_WORDS - 1)], ~(1ULL << (pos & 63)));
	__sync_fetch_and_add(&b->used[pl], -1);
}

/* A new mapping for k from the subscriber's blocks, in the order held:
 * REASON_NONE with *out (and *fresh if this CPU made it), or why not. */
static __always_inline enum reason cg_new(const struct cg_key *k, int pl, __u8 tcp,
					  struct cg_out *out, int *fresh)
{
	__u32 si = bpf_ntohl(k->addr) - cfg_cg_in_net;
	struct cg_sub *s = map_lookup(&cg_subs, &si);
	__u32 nb;

	if (!s)
		return REASON_DROP_HELPER; /* sized to the inside prefix: cannot happen */
	nb = s->nblocks;
	for (int j = 0; j < CG_SUB_BLOCKS; j++) {
		struct cg_block *b;
		struct cg_in *in;
		__u32 id, used, port;
		long pos, off;
		struct cg_out *o;

		if (j >= nb)
			break;
		id = s->block[j] - 1;
		b = map_lookup(&cg_blocks, &id);
		if (!b)
			continue;
		pos = cg_take(b, pl);
		if (pos < 0)
			continue;
		used = __sync_fetch_and_add(&b->used[pl], 1) + 1;
		port = b->base + (__u32)pos;
		off = cg_pool_port(b->addr, bpf_htons(port));
		in = off >= 0 ? cg_slot(pl, off) : NULL;
		if (!in) {
			cg_give(b, pl, pos);
			return REASON_DROP_BAD_ENTRY; /* a block granted outside the pool */
		}
		if (used == cfg_cg_warn)
			cg_event(k->addr, id, used, pl);
		/* The way back first, whole in one store. */
		*(__u64 *)in = (__u64)k->addr | (__u64)k->port << 32 | (__u64)CG_USED << 48 |
			       (__u64)tcp << 56;
		out->addr = b->addr;
		out->port = bpf_htons(port);
		out->epoch = sw_cg_epoch;
		if (!bpf_map_update_elem(&cg_mappings, k, out, BPF_NOEXIST)) {
			*fresh = 1;
			return REASON_NONE;
		}
		/* Another CPU made this mapping first (or the hash is full). */
		*(__u64 *)in = 0;
		cg_give(b, pl, pos);
		o = map_lookup(&cg_mappings, k);
		if (!o)
			return REASON_CGNAT_REFUSED;
		*out = *o;
		return REASON_NONE;
	}
	return s->spent ? REASON_CGNAT_REFUSED : REASON_CGNAT_NO_BLOCK;
}

/* Address(-and-port)-dependent filtering: may remote raddr:rport reach
 * the mapping pub:pport? (Always, endpoint-independent.) */
static __always_inline int cg_permitted(__u32 pub, __be16 pport, __u8 proto, __u32 raddr, __be16 rport)
{
	struct cg_perm k = {
		.pub = pub, .pport = pport, .proto = proto, .raddr = raddr,
		.rport = cfg_cg_filter == 2 ? rport : 0,
	};

	if (!cfg_cg_filter)
		return 1;
	return map_lookup(&cg_perms, &k) != NULL;
}

/* The mapping pub:pport sent to raddr:rport: let its answers in. */
static __always_inline void cg_permit(__u32 pub, __be16 pport, __u8 proto, __u32 raddr, __be16 rport)
{
	struct cg_perm k = {
		.pub = pub, .pport = pport, .proto = proto, .raddr = raddr,
		.rport = cfg_cg_filter == 2 ? rport : 0,
	};
	__u8 one = 1;

	if (!cfg_cg_filter || map_lookup(&cg_perms, &k))
		return;
	bpf_map_update_elem(&cg_perms, &k, &one, BPF_ANY);
}

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

/* Answer a refused first packet with ICMP destination unreachable,
 * communication administratively prohibited (type 3 code 13, RFC 1812;
 * RFC 6888 REQ-4's quota made to fail fast), from the relay's subscriber-side address
 * (cfg_cg_gw; the packet's destination if none), back where it came
 * from: the frame grows by 28 bytes in front and is cut to 70. */
static __always_inline int cg_refuse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = p->data, *end;
	struct iphdr *oip = data + ETH_LEN;
	__u8 mac[12];
	__u32 to, from, *w;
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
	from = cfg_cg_gw ? cfg_cg_gw : oip->daddr;
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
	ic[1] = 13;
	*(__u16 *)(ic + 2) = 0;
	*(__u32 *)(ic + 4) = 0;
	w = (__u32 *)(ic + 8);
	acc = (__u16)(3 | 13 << 8); /* type and code as stored (raw) */
	acc += (__u64)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6];
	*(__u16 *)(ic + 2) = ~csum_fold(acc);
	put_ipv4(data + ETH_LEN, 0, 20 + 8 + 28, IPPROTO_ICMP, 64, from, to);
	if (cut && bpf_xdp_adjust_tail(ctx, -cut))
		return verdict(REASON_DROP_HELPER);
	count_reason(REASON_CGNAT_REFUSED);
	return XDP_TX;
}

/* What the subscriber interface does with a packet parse left: IPv4
 * the CGNAT cannot translate is dropped, since the stack would forward
 * it with the subscriber's inside source; unless it is for the relay
 * itself or another subscriber's inside address. */
static __always_inline enum reason cg_sub_unparsed(struct pkt *p, enum reason r)
{
	struct ethhdr *eth = p->data;
	struct iphdr *ip = p->data + ETH_LEN;

	if (!cfg_cg_subs || (r != REASON_PASS_FRAGMENT && r != REASON_PASS_IP_OPTIONS &&
			     r != REASON_PASS_ICMP_OTHER))
		return r;
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
	if (!cg_permitted(p->key.daddr[0], p->key.dport, p->key.proto, p->key.saddr[0], p->key.sport))
		return verdict(REASON_DROP_CGNAT_FILTERED);
	if (p->ttl <= 1)
		return verdict(REASON_PASS_TTL);
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
	struct cg_out *o, nv;
	struct cg_key k = {};
	__u32 dst;
	enum reason r;
	long hp = -1;
	int pl, fresh = 0;
	__u8 tcp;

	r = parse(ctx, &p);
	if (r != REASON_NONE)
		return verdict(cg_sub_unparsed(&p, r));
	if (p.key.family != 4 || !cfg_cg_subs)
		return verdict(REASON_PASS_NOT_OURS);
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
	o = map_lookup(&cg_mappings, &k);
	if (!o) {
		if (p.icmp_err)
			return verdict(REASON_DROP_CGNAT_NO_MAPPING);
		if (pl == 0 && !cg_syn(&p))
			return verdict(REASON_DROP_CGNAT_NOT_SYN);
		r = cg_new(&k, pl, tcp, &nv, &fresh);
		if (r == REASON_CGNAT_NO_BLOCK) {
			r = send_miss(ctx, ROLE_RELAY_SUB, &p);
			return verdict(r == REASON_MISS ? REASON_CGNAT_NO_BLOCK : r);
		}
		if (r == REASON_CGNAT_REFUSED)
			return cg_refuse(ctx, &p);
		if (r != REASON_NONE)
			return verdict(r);
		o = &nv;
	} else if (o->epoch != (__u16)sw_cg_epoch) {
		o->epoch = sw_cg_epoch;
	}
	if (!p.icmp_err)
		cg_permit(o->addr, o->port, p.key.proto, dst, p.key.dport);
	if (tcp && !fresh) {
		long off = cg_pool_port(o->addr, o->port);
		struct cg_in *s = off >= 0 ? cg_slot(pl, off) : NULL;

		if (s)
			cg_note(s, tcp, cg_syn(&p));
	}
	e.saddr[0] = o->addr;
	e.sport = o->port;
	e.daddr[0] = dst;
	e.dport = p.key.dport;
	if (hp >= 0) {
		struct cg_in *b = cg_slot(pl, hp);
		__u64 v = b ? *(volatile __u64 *)b : 0; /* whole, as cg_new writes it */

		if (!((v >> 48) & CG_USED))
			return verdict(REASON_DROP_CGNAT_NO_MAPPING);
		if (!cg_permitted(dst, p.key.dport, p.key.proto, o->addr, o->port))
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
