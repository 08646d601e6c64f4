/* cg_table.h: the CGNAT's NAT44 mappings in cg_table (maps.h): finding
 * a key's mapping, and putting a new one in (cg_ports.h).
 *
 * A key's bucket is picked by a seeded mix of its one word (the flow
 * table's random seed, kept pinned), so no subscriber can aim its ports
 * at one bucket. Lookups take
 * no lock. Puts take the bucket's lock (cg_bmeta), which is what keeps a
 * key in one place when two CPUs make its mapping at once: the second
 * finds the first's way under the lock. A put writes the mapping, then
 * publishes the key word with an exchange (a full barrier: a reader that
 * sees the key sees the mapping). The agent ends a mapping by clearing
 * its key word with a compare-and-swap, and puts a key in (an explicit
 * mapping) under the same lock (xdp/cgtable.go). A bucket with no free way puts
 * the key in the cg_mappings spill and counts it in cg_bmeta. x86's
 * loads are not reordered with loads, so reading the key word, the
 * mapping and the key word again in program order is enough; a weaker
 * machine would need load-acquire. */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
#include "types.h"

#define CG_LOCK_TRIES 256 /* a holder keeps the lock for a port and a slot write: well under a microsecond */

static __always_inline __u64 cg_kword(const struct cg_key *k)
{
	return (__u64)k->addr | (__u64)k->port << 32 | (__u64)k->proto << 48;
}

/* The bucket of key word kw: the word, XORed with a secret, through two
 * rounds of xor-shift and multiply by secret odd multipliers (the flow
 * table's seed, pinned), its top bits the index. Not the flow table's
 * plain multiply-shift: on keys as regular as a subscriber's ports, a
 * multiply-shift puts thousands of keys in a few buckets for one seed
 * in six (TestCGNATTableSpread), where this spreads them as at random.
 * (x >> 1) >> (63 - bits) is x >> (64 - bits) that also works for one
 * bucket. Mirrored by cgTableHash (xdp/cgtable.go). */
static __always_inline __u32 cg_tab_bucket(__u64 kw)
{
	__u64 x = kw ^ cfg_seed[2];

	x ^= x >> 33;
	x *= cfg_seed[0];
	x ^= x >> 29;
	x *= cfg_seed[1];
	x ^= x >> 32;
	return (x >> 1) >> (63 - cfg_cg_tab_bits);
}

/* kw's way in bucket b: a copy of its mapping in *out and where its
 * epoch is in *ep; 0 if none (or the way changed while read). */
static __always_inline int cg_find_way(struct cg_bucket *b, __u64 kw, struct cg_out *out, __u16 **ep)
{
#pragma unroll
	for (int j = 0; j < CG_WAYS; j++) {
		__u64 w = *(volatile __u64 *)&b->w[j].k;

		if ((w & (CG_WAY_USED | CG_WAY_KEY)) != (kw | CG_WAY_USED))
			continue;
		*(__u64 *)out = *(volatile __u64 *)&b->w[j].o;
		if (*(volatile __u64 *)&b->w[j].k != w)
			return 0;
		*ep = &b->w[j].o.epoch;
		return 1;
	}
	return 0;
}

/* k's mapping in the spill, looked up only when its bucket's meta word
 * counts keys there. */
static __always_inline int cg_find_spill(__u32 *meta, const struct cg_key *k, struct cg_out *out, __u16 **ep)
{
	struct cg_out *o;

	if (!meta || *(volatile __u32 *)meta < CG_META_SPILL)
		return 0;
	o = map_lookup(&cg_mappings, k);
	if (!o)
		return 0;
	*out = *o;
	*ep = &o->epoch;
	return 1;
}

/* k's mapping, in its bucket b or the spill. */
static __always_inline int cg_find_in(struct cg_bucket *b, __u32 *meta, const struct cg_key *k,
				      __u64 kw, struct cg_out *out, __u16 **ep)
{
	return cg_find_way(b, kw, out, ep) || cg_find_spill(meta, k, out, ep);
}

/* Where key k lives: its word, its bucket and the bucket's meta word. */
struct cg_place {
	__u64 kw;
	struct cg_bucket *b;
	__u32 *meta;
};

static __always_inline int cg_place_of(const struct cg_key *k, struct cg_place *pl)
{
	__u32 i;

	pl->kw = cg_kword(k);
	i = cg_tab_bucket(pl->kw);
	pl->b = map_lookup(&cg_table, &i);
	pl->meta = map_lookup(&cg_bmeta, &i);
	return pl->b && pl->meta;
}

/* k's mapping, the established packet's one lookup: its bucket's line,
 * then, only if the key is not there, the meta word (and the spill). */
static __always_inline int cg_lookup(const struct cg_key *k, struct cg_out *out, __u16 **ep)
{
	__u64 kw = cg_kword(k);
	__u32 i = cg_tab_bucket(kw);
	struct cg_bucket *b = map_lookup(&cg_table, &i);

	if (!b)
		return 0; /* sized to the bits: cannot happen after load */
	if (cg_find_way(b, kw, out, ep))
		return 1;
	return cg_find_spill(map_lookup(&cg_bmeta, &i), k, out, ep);
}

/* Take the bucket's lock, or find that the CPU holding it made k's
 * mapping meanwhile: 1 locked, 0 found (in *out, *ep), -1 neither within
 * CG_LOCK_TRIES. */
static __always_inline int cg_lock(struct cg_place *pl, struct cg_out *out, __u16 **ep)
{
	for (int i = 0; i < CG_LOCK_TRIES; i++) {
		/* Read before the atomic: a waiter that only reads leaves the
		 * holder's unlock its line. */
		if (!(*(volatile __u32 *)pl->meta & (CG_META_LOCK | CG_META_AGENT))) {
			__u32 old = __sync_fetch_and_or(pl->meta, CG_META_LOCK);

			if (!(old & (CG_META_LOCK | CG_META_AGENT)))
				return 1;
			if (!(old & CG_META_LOCK)) /* the agent's: the bit set here is no one's */
				__sync_fetch_and_and(pl->meta, ~CG_META_LOCK);
		}
		if (cg_find_way(pl->b, pl->kw, out, ep))
			return 0;
	}
	return -1;
}

static __always_inline void cg_unlock(struct cg_place *pl)
{
	__sync_fetch_and_and(pl->meta, ~CG_META_LOCK);
}

/* Put k's new mapping o in its bucket, or the spill when the bucket is
 * full, the lock held: 0, or the spill's error. */
static __always_inline long cg_put(struct cg_place *pl, const struct cg_key *k, const struct cg_out *o, __u16 **ep)
{
#pragma unroll
	for (int j = 0; j < CG_WAYS; j++) {
		struct cg_way *w = &pl->b->w[j];
		__u64 old = *(volatile __u64 *)&w->k, gen;

		if (old & CG_WAY_USED)
			continue;
		gen = (old + (1ULL << 56)) & CG_WAY_GEN;
		*(volatile __u64 *)&w->o = *(const __u64 *)o;
		__sync_lock_test_and_set(&w->k, pl->kw | CG_WAY_USED | gen);
		*ep = &w->o.epoch;
		return 0;
	}
	{
		long err = bpf_map_update_elem(&cg_mappings, k, o, BPF_NOEXIST);

		if (err)
			return err;
		__sync_fetch_and_add(pl->meta, CG_META_SPILL);
		*ep = NULL;
		return 0;
	}
}
