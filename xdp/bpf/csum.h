/* csum.h: ones'-complement checksum helpers (RFC 1071, RFC 1624).
 * Sums are accumulated in a __u64 from raw network-order words as loaded
 * from the packet; the ones'-complement sum commutes with byte swapping,
 * so results are stored back raw and no byte swap is ever needed. */
#pragma once

#include "common.h"

static __always_inline __u16 csum_fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* Remove a 32-bit word from a sum: adding its complement subtracts it. */
static __always_inline __u64 csum_sub32(__u64 acc, __u32 w)
{
	return acc + (__u32)~w;
}

static __always_inline __u64 csum_sub16(__u64 acc, __u16 w)
{
	return acc + (__u16)~w;
}

/* Sum of the four words of an IPv6 address. */
static __always_inline __u64 csum_add128(__u64 acc, const __u32 *a)
{
	return acc + a[0] + a[1] + a[2] + a[3];
}

static __always_inline __u64 csum_sub128(__u64 acc, const __u32 *a)
{
	return acc + (__u32)~a[0] + (__u32)~a[1] + (__u32)~a[2] + (__u32)~a[3];
}

/* Incremental update: HC' = ~(~HC + ~m + m'), with acc = sum(~m + m'). */
static __always_inline __u16 csum_apply(__u16 old, __u64 acc)
{
	return (__u16)~csum_fold(acc + (__u16)~old);
}

/* Sum of a 20-byte IPv4 header (checksum included). */
static __always_inline __u16 ipv4_sum(const struct iphdr *ip)
{
	const __u32 *w = (const __u32 *)ip;

	return csum_fold((__u64)w[0] + w[1] + w[2] + w[3] + w[4]);
}
