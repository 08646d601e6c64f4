/* cg_ports.h: taking a port for a new mapping from a subscriber's
 * blocks (cgnat.h; xdp/README.md, CGNAT: bitmap, races between CPUs,
 * what the agent is told). */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
#include "parse.h"
#include "reasons.h"
#include "types.h"
#include "cg_pool.h"
#include "cg_table.h"

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
static __always_inline void cg_event(__u32 si, __u32 block, __u32 used, int pl)
{
	struct cg_event *ev = bpf_ringbuf_reserve(&cg_events, sizeof(*ev), 0);

	if (!ev)
		return;
	ev->sub = si;
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

/* A new mapping from the blocks of subscriber si (its cg_subs index),
 * in the order held, for key k4 (NAT44, put in cg_table at *tp, whose
 * bucket lock the caller holds) or, when k6 is set, k6 (NAT64: the slot
 * holds the subscriber's /64 index, its interface ID goes to cg_slots6
 * first, the mapping to the cg_mappings6 hash): REASON_NONE with *out
 * (and *fresh if this CPU made it, *ep where its epoch is), or why not.
 * The caller passes one of the two keys as a constant, so each inlined
 * copy keeps one map. */
static __always_inline enum reason cg_new_for(__u32 si, const struct cg_key *k4,
					      const struct cg_key6 *k6, struct cg_place *tp, int pl,
					      __u8 tcp, struct cg_out *out, int *fresh, __u16 **ep)
{
	struct cg_sub *s = map_lookup(&cg_subs, &si);
	__u32 nb;

	if (!s)
		return REASON_DROP_HELPER; /* sized to the subscribers: cannot happen */
	nb = s->nblocks;
	for (int j = 0; j < CG_SUB_BLOCKS; j++) {
		struct cg_block *b;
		struct cg_in *in;
		__u32 id, used, port, idx;
		__u64 word;
		long pos, off;
		struct cg_out *o;
		int err;

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
			cg_event(si, id, used, pl);
		if (k6) {
			__u64 *iid;

			idx = (__u32)pl * cfg_cg_pool_n * cg_per_addr() + (__u32)off;
			iid = map_lookup(&cg_slots6, &idx);
			if (!iid) {
				cg_give(b, pl, pos);
				return REASON_DROP_HELPER; /* sized as cg_slots: cannot happen */
			}
			*iid = *(__u64 *)&k6->addr[2];
			word = (__u64)(si - cfg_cg_subs) | (__u64)k6->port << 32 |
			       (__u64)(CG_USED | CG_V6) << 48 | (__u64)tcp << 56;
		} else {
			word = (__u64)k4->addr | (__u64)k4->port << 32 | (__u64)CG_USED << 48 |
			       (__u64)tcp << 56;
		}
		/* The way back first, whole in one store. */
		*(__u64 *)in = word;
		out->addr = b->addr;
		out->port = bpf_htons(port);
		out->epoch = sw_cg_epoch;
		if (!k6) {
			/* The bucket is locked: no other CPU is making k4's. */
			if (!tp || cg_put(tp, k4, out, ep)) {
				*(__u64 *)in = 0; /* the spill is full */
				cg_give(b, pl, pos);
				return REASON_CGNAT_REFUSED;
			}
			*fresh = 1;
			return REASON_NONE;
		}
		err = bpf_map_update_elem(&cg_mappings6, k6, out, BPF_NOEXIST);
		if (!err) {
			*fresh = 1;
			*ep = NULL;
			return REASON_NONE;
		}
		/* Another CPU made this mapping first (or the hash is full). */
		*(__u64 *)in = 0;
		cg_give(b, pl, pos);
		o = map_lookup(&cg_mappings6, k6);
		if (!o)
			return REASON_CGNAT_REFUSED;
		*out = *o;
		*ep = &o->epoch;
		return REASON_NONE;
	}
	return s->spent ? REASON_CGNAT_REFUSED : REASON_CGNAT_NO_BLOCK;
}

/* k's NAT44 mapping, made if it has none: under its bucket's lock, so
 * of two CPUs making it at once the second finds the first's.
 * REASON_DROP_CGNAT_BUSY if the lock stays taken (counted: a CPU holds
 * it for a port and a slot write, so this is not expected). */
static __always_inline enum reason cg_new(const struct cg_key *k, int pl, __u8 tcp,
					  struct cg_out *out, int *fresh, __u16 **ep)
{
	struct cg_place tp;
	enum reason r;
	int got;

	if (!cg_place_of(k, &tp))
		return REASON_DROP_HELPER; /* sized to the bits: cannot happen */
	got = cg_lock(&tp, out, ep);
	if (got == 0)
		return REASON_NONE;
	if (got < 0)
		return REASON_DROP_CGNAT_BUSY;
	if (cg_find_in(tp.b, tp.meta, k, tp.kw, out, ep)) {
		cg_unlock(&tp);
		return REASON_NONE;
	}
	r = cg_new_for(bpf_ntohl(k->addr) - cfg_cg_in_net, k, NULL, &tp, pl, tcp, out, fresh, ep);
	cg_unlock(&tp);
	return r;
}
