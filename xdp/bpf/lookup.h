/* lookup.h: the one map lookup of the fast path. A carrier key of this end
 * (IPv4 to cfg_carrier_addr, TCP/UDP/ICMP, destination port in the
 * carrier range) is looked up in its carriers slot; every other IPv4 key,
 * and a carrier key whose slot holds another key while spill is set, in
 * the flows4 hash (16-byte key); an IPv6 key in the flows hash. The Go
 * loader (xdp/slots.go) keeps the rule: a key is in exactly one place, a
 * carrier key in flows4 only if its slot is taken by another. */
#pragma once

#include "common.h"
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

static __always_inline struct flow_entry *flow_lookup(const struct flow_key *k)
{
	long idx = carrier_slot_index(k);

	if (idx >= 0) {
		__u32 i = idx;
		struct carrier_slot *s = map_lookup(&carriers, &i);
		__u64 want = (__u64)k->saddr[0] | (__u64)k->sport << 32 | SLOT_USED;

		if (!s)
			return NULL; /* not sized for the range: cannot happen after Load */
		if ((*(__u64 *)s & SLOT_MATCH_MASK) == want)
			return &s->e;
		if (!s->spill)
			return NULL;
	}
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
