/* cg_pool.h: where the CGNAT's things are (cgnat.h): which addresses
 * are subscribers' and the pool's, and the inbound slot of a pool
 * address:port, by arithmetic (the pool is a known range). */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
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
