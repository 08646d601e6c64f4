/* nhcache.h: the next-hop cache in front of bpf_fib_lookup for IPv4
 * output (fwd.h). The helper costs ~130 ns a packet, more than the rest
 * of the relay's CGNAT program; a hit here costs a hash, an inlined
 * per-CPU array lookup and a compare.
 *
 * An entry answers one lookup's inputs (everything forward() passes that
 * can change the answer: destination, source, ingress ifindex, tos, l4
 * protocol) with the egress ifindex and both MACs, for packets up to the
 * largest tot_len known to pass the MTU check (a bigger packet takes the
 * real lookup, so FRAG_NEEDED still comes from the kernel). It is fresh
 * while both hold:
 * - its gen equals sw_nh_gen, which the agent bumps on every rtnetlink
 *   message of its namespace (routes, neighbours, links, addresses,
 *   rules, nexthops, netconf: xdp/nexthop.go). The program reads sw_nh_gen
 *   BEFORE the real lookup and stores that value, so a bump during the
 *   lookup leaves the entry stale, never wrongly fresh;
 * - bpf_jiffies64() is below its expiry, set at fill time to
 *   cfg_nh_ttl jiffies (~50 ms) later: the backstop when no agent bumps
 *   (a pinned program between agents) or an event was lost.
 * Only BPF_FIB_LKUP_RET_SUCCESS answers are cached. cfg_nh_ttl = 0 turns
 * the cache off.
 *
 * Per-CPU and direct-mapped: no lock, no atomic, a collision only
 * replaces an entry (an attacker choosing addresses to collide costs
 * itself the uncached lookup, nothing else). An entry is written and
 * read by one CPU's programs, which XDP runs one at a time (NAPI, BHs
 * off). 1024 slots of 48 bytes: 48 KiB a CPU (3 MiB on 64 CPUs), about
 * an L1d; enough for the (source, destination) pairs one CPU's busy
 * flows use at a time at a relay, where 256 slots (12 KiB) would evict
 * under a few hundred remotes. */
#pragma once

#include "common.h"
#include "config.h"

#define NH_BITS 10
#define NH_SLOTS (1 << NH_BITS)

struct nh_entry {
	/* The lookup's inputs it answers. */
	__be32 dst;
	__be32 src;
	__u32 iif;
	__u8 tos;
	__u8 proto;
	__u16 max_len; /* largest tot_len known to pass the MTU check */
	/* Its validity. */
	__u32 gen;     /* sw_nh_gen read before the lookup that filled it */
	/* The answer. */
	__u32 oif;
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
	__u64 expires; /* bpf_jiffies64() it is stale from */
};
build_bug_on(sizeof(struct nh_entry) != 48);

/* The cache: one struct nh_entry a slot, per CPU; not pinned (soft
 * state, and sw_nh_gen starts again with each load: xdp/pin.go). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NH_SLOTS);
	__type(key, __u32);
	__type(value, struct nh_entry);
} nh_cache SEC(".maps");

/* nh_slot is the slot of a lookup's inputs: a multiplicative hash's top
 * bits. */
static __always_inline struct nh_entry *nh_slot(__be32 dst, __be32 src, __u32 iif, __u8 tos, __u8 proto)
{
	__u32 h = dst * 0x9e3779b1u;

	h ^= src * 0x85ebca6bu;
	h ^= (iif << 16) ^ ((__u32)tos << 8) ^ proto;
	h *= 0xc2b2ae35u;
	__u32 k = h >> (32 - NH_BITS);
	return map_lookup(&nh_cache, &k);
}

/* nh_hit reports whether e answers these inputs for a packet of tot_len
 * bytes, now. */
static __always_inline int nh_hit(const struct nh_entry *e, __be32 dst, __be32 src, __u32 iif,
				  __u8 tos, __u8 proto, __u16 tot_len)
{
	return e->dst == dst && e->src == src && e->iif == iif && e->tos == tos &&
	       e->proto == proto && e->gen == sw_nh_gen && tot_len <= e->max_len &&
	       bpf_jiffies64() < e->expires;
}
