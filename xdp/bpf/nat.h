/* nat.h: IPv4 NAPT in place (addresses, ports or echo identifier, TTL):
 * the size stays, L4 checksums are updated incrementally and the IPv4
 * header checksum is recomputed (the input's was verified by parse). */
#pragma once

#include "common.h"
#include "csum.h"
#include "types.h"
#include "parse.h"
#include "translate.h"

static __always_inline enum reason napt44(struct pkt *p, const struct flow_entry *e)
{
	struct iphdr *ip = p->data + ETH_LEN;
	__u8 *l4 = p->data + L4_4;
	__u64 acc = 0, sum;
	int off;

	if ((void *)(ip + 1) > p->end)
		return REASON_DROP_HELPER;
	if (p->key.proto != IPPROTO_ICMP) {
		acc = csum_sub32(acc, ip->saddr);
		acc = csum_sub32(acc, ip->daddr);
		acc += e->saddr[0];
		acc += e->daddr[0];
	}
	off = rewrite_ports(p, l4, e, &acc);
	finish_csum(p, l4, off, acc);
	/* Header checksum from the unchanged words, loaded before any store
	 * to the header, and the new ones in registers (see put_ipv4). */
	sum = (__u64)((__u32 *)ip)[0] + ((__u32 *)ip)[1] +
	      ((__u16)(p->ttl - 1) | (__u16)ip->protocol << 8) + e->saddr[0] + e->daddr[0];
	ip->ttl = p->ttl - 1;
	ip->saddr = e->saddr[0];
	ip->daddr = e->daddr[0];
	ip->check = ~csum_fold(sum);
	return REASON_NONE;
}
