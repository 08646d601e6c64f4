/* nhcache.h: the next-hop caches in front of bpf_fib_lookup, one for
 * IPv4 output and one for IPv6 output (fwd.h). The helper costs ~130 ns
 * a packet for IPv4 (more for IPv6), more than the rest of the relay's
 * CGNAT program; a hit here costs a hash, an inlined per-CPU array
 * lookup and a compare.
 *
 * An entry answers one lookup's inputs (everything forward() passes that
 * can change the answer: destination, source, ingress ifindex, tos, l4
 * protocol; for IPv6 flowinfo in place of tos) with the egress ifindex
 * and both MACs, for packets up to the largest tot_len known to pass
 * the MTU check (a bigger packet takes the real lookup, so FRAG_NEEDED
 * still comes from the kernel). It is fresh while both hold:
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
 * under a few hundred remotes.
 *
 * IPv6 entries (nh6_entry, 72 bytes: two 16-byte addresses) live in a
 * second per-CPU array, nh6_cache, of as many slots: 72 KiB a CPU, 120
 * KiB with the IPv4 one (7.5 MiB on 64 CPUs). One array with a family
 * field would need every slot at the IPv6 size: 1024 slots shared by
 * both families would be 72 KiB with 24 bytes of each IPv4 entry unused
 * and an edge's downloads (IPv6 out) evicting its carriers (IPv4 out)
 * and back, on the same CPU at the same time; 2048 such slots to keep
 * 1024 a family, 144 KiB. Two arrays cost less than the latter, do not
 * let one family evict the other, keep the IPv4 entry (and its hot
 * path) as it was, and the family is known at compile time in each
 * branch of forward(), so no family field is compared.
 * flowinfo is in the key as forward() passes it (traffic class and flow
 * label: a multipath route hashes the label); a translated packet's
 * label is 0 (RFC 7915), so one LAN host's downloads from one remote
 * share an entry, while native IPv6 with per-flow labels takes one a
 * flow. */
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

struct nh6_entry {
	/* The lookup's inputs it answers. */
	__be32 dst[4];
	__be32 src[4];
	__u32 iif;
	__be32 flowinfo; /* as forward() passes it: traffic class, flow label */
	__u8 proto;
	__u8 pad;
	__u16 max_len;   /* largest tot_len known to pass the MTU check */
	/* Its validity. */
	__u32 gen;       /* sw_nh_gen read before the lookup that filled it */
	/* The answer. */
	__u32 oif;
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
	__u64 expires;   /* bpf_jiffies64() it is stale from */
};
build_bug_on(sizeof(struct nh6_entry) != 72);

/* The IPv6 cache: as nh_cache, one struct nh6_entry a slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NH_SLOTS);
	__type(key, __u32);
	__type(value, struct nh6_entry);
} nh6_cache SEC(".maps");

/* nh6_slot is the slot of an IPv6 lookup's inputs: each address folded
 * to a word (xor), then nh_slot's hash. */
static __always_inline struct nh6_entry *nh6_slot(const __be32 *dst, const __be32 *src, __u32 iif,
						  __be32 flowinfo, __u8 proto)
{
	__u32 h = (dst[0] ^ dst[1] ^ dst[2] ^ dst[3]) * 0x9e3779b1u;

	h ^= (src[0] ^ src[1] ^ src[2] ^ src[3]) * 0x85ebca6bu;
	h ^= flowinfo * 0x27d4eb2fu;
	h ^= (iif << 16) ^ proto;
	h *= 0xc2b2ae35u;
	__u32 k = h >> (32 - NH_BITS);
	return map_lookup(&nh6_cache, &k);
}

/* nh6_hit reports whether e answers these IPv6 inputs for a packet of
 * tot_len bytes, now. */
static __always_inline int nh6_hit(const struct nh6_entry *e, const __be32 *dst, const __be32 *src,
				   __u32 iif, __be32 flowinfo, __u8 proto, __u16 tot_len)
{
	__u32 diff = (e->dst[0] ^ dst[0]) | (e->dst[1] ^ dst[1]) | (e->dst[2] ^ dst[2]) |
		     (e->dst[3] ^ dst[3]) | (e->src[0] ^ src[0]) | (e->src[1] ^ src[1]) |
		     (e->src[2] ^ src[2]) | (e->src[3] ^ src[3]);

	return diff == 0 && e->iif == iif && e->flowinfo == flowinfo && e->proto == proto &&
	       e->gen == sw_nh_gen && tot_len <= e->max_len && bpf_jiffies64() < e->expires;
}
