/* lookup.h: the one map lookup of the fast path. A carrier key of this end
 * (IPv4 to cfg_carrier_addr, TCP/UDP/ICMP, destination port in the
 * carrier range) is looked up in its carriers slot; every other key in
 * the flow table's bucket its hash picks. The hashes are the spill: an
 * IPv4 key in flows4 (16-byte key), an IPv6 key in flows, consulted only
 * when the slot holds another key while spill is set, or the bucket is
 * full and marked spill. The Go loader (xdp/slots.go, xdp/table.go)
 * keeps the rule: a key is in exactly one place, in a hash only if its
 * slot or bucket has no room. */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"

#define SLOT_USED (1ULL << 48)
#define SLOT_MATCH_MASK 0x00ffffffffffffffULL /* all but spill */

/* The slot index of a carrier key, or -1. */
static __always_inline long carrier_slot_index(const struct flow_key *k)
{
	__u32 port, plane;

	if (k->family != 4 || !cfg_carrier_addr || k->daddr[0] != cfg_carrier_addr)
		return -1;
	port = bpf_ntohs(k->dport);
	if (!port || port < cfg_port_lo || port > cfg_port_hi)
		return -1;
	switch (k->proto) {
	case IPPROTO_TCP:
		plane = 0;
		break;
	case IPPROTO_UDP:
		plane = 1;
		break;
	case IPPROTO_ICMP:
		plane = 2;
		break;
	default:
		return -1;
	}
	return plane * ((__u32)cfg_port_hi - cfg_port_lo + 1) + port - cfg_port_lo;
}

/* The bucket of key words w: the sum of each word times its own random
 * odd multiplier (Dietzfelbinger et al.'s multiply-shift for vectors:
 * any two keys' sums collide with probability ~2^-64 over the choice of
 * multipliers), then a xor-shift, multiply, xor-shift, the index its top
 * bits. The sum's top bits alone, the first version, are a poor index
 * for keys as regular as one LAN host's consecutive ports to one remote:
 * for one seed in six, 8800 of 12000 such keys found their bucket full
 * (TestFlowTableSpread); mixed, at most ~215, as at random. The five
 * products are independent, so they pipeline. (h >> 1) >> (63 - bits)
 * is h >> (64 - bits) that also works for one bucket. Mirrored by
 * tableHash in xdp/table.go. */
static __always_inline __u32 table_bucket(const __u64 *w)
{
	__u64 h = w[0] * cfg_seed[0] + w[1] * cfg_seed[1] + w[2] * cfg_seed[2] +
		  w[3] * cfg_seed[3] + w[4] * cfg_seed[4];

	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	h ^= h >> 32;
	return (h >> 1) >> (63 - cfg_bucket_bits);
}

static __always_inline int key_eq(const __u64 *a, const __u64 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4];
}

/* k in the spill hashes. */
static __always_inline struct flow_entry *spill_lookup(const struct flow_key *k)
{
	if (k->family == 4) {
		/* struct flow_key4, stored as two whole words (see seal_key). */
		__u64 k4[2] = {
			(__u64)k->proto | (__u64)k->sport << 16 | (__u64)k->dport << 32,
			(__u64)k->saddr[0] | (__u64)k->daddr[0] << 32,
		};

		return map_lookup(&flows4, k4);
	}
	return map_lookup(&flows, k);
}

static __always_inline struct flow_entry *flow_lookup(const struct flow_key *k)
{
	long idx = carrier_slot_index(k);
	struct flow_bucket *b;
	__u64 w[5];
	__u32 i;

	if (idx >= 0) {
		struct carrier_slot *s;
		__u64 want = (__u64)k->saddr[0] | (__u64)k->sport << 32 | SLOT_USED;

		i = idx;
		s = map_lookup(&carriers, &i);
		if (!s)
			return NULL; /* not sized for the range: cannot happen after Load */
		if ((*(__u64 *)s & SLOT_MATCH_MASK) == want)
			return &s->e;
		return s->spill ? spill_lookup(k) : NULL;
	}
	__builtin_memcpy(w, k, sizeof(w));
	i = table_bucket(w);
	b = map_lookup(&flowtab, &i);
	if (!b)
		return NULL; /* the mask fits the table: cannot happen after Load */
#pragma unroll
	for (int j = 0; j < FLOW_WAYS; j++)
		if (key_eq((const __u64 *)&b->w[j].k, w))
			return &b->w[j].e;
	return b->spill ? spill_lookup(k) : NULL;
}
