/* reasons.h: why a packet left the fast path (enum reason), and the per-CPU
 * counter keyed by it. Every XDP_PASS and XDP_DROP the datapath decides is
 * counted here under one name; the Go mirror is xlat.Reason (same numbers,
 * String() names), checked by TestReasonsMatchC. */
#pragma once

#include "common.h"

enum reason {
	REASON_NONE = 0,         /* translated and forwarded: counted per flow */
	REASON_PASS_NOT_IP,      /* not IPv4/IPv6 (ARP, LLDP, VLAN...) or runt */
	REASON_PASS_LOCAL,       /* for the router itself: own, link-local, multicast */
	REASON_PASS_NOT_OURS,    /* no flow entry and outside unmap's ranges */
	REASON_PASS_FRAGMENT,    /* IPv4 fragment or IPv6 fragment header */
	REASON_PASS_IP_OPTIONS,  /* IPv4 header with options (IHL > 5) */
	REASON_PASS_IPV6_EXT,    /* IPv6 extension header chain */
	REASON_PASS_TTL,         /* TTL/hop limit <= 1: the stack sends time exceeded */
	REASON_PASS_ICMP_OTHER,  /* ICMP other than echo (errors too): left to the stack */
	REASON_PASS_NO_NEIGH,    /* translated; FIB has no neighbour yet: stack resolves */
	REASON_PASS_FIB,         /* translated; FIB gave no XDP route: stack decides */
	REASON_DROP_TRUNC_L3,    /* frame shorter than its IP header */
	REASON_DROP_BAD_IP,      /* wrong IP version or IHL < 5 */
	REASON_DROP_BAD_LEN,     /* IP or UDP length disagrees with the frame */
	REASON_DROP_BAD_CSUM,    /* IPv4 header checksum wrong */
	REASON_DROP_TRUNC_L4,    /* L4 header does not fit in the IP payload */
	REASON_DROP_UDP_ZERO_CSUM, /* UDP without checksum where one is needed */
	REASON_DROP_BAD_ENTRY,   /* flow entry's action does not fit this packet */
	REASON_DROP_HELPER,      /* a BPF helper failed (adjust_head) */
	REASON_MISS,             /* ours but no entry: sent to the agent, not forwarded */
	REASON_DROP_MISS_FULL,   /* miss ring buffer full: dropped */
	REASON_KEEPALIVE,        /* an edge's carrier keepalive: consumed */
	REASON_ICMP_ERR_TO_AGENT, /* relay: ICMPv6 error from a router beyond it: to the agent */
	REASON_TTL_TO_AGENT,     /* TTL ran out here (relay: a carrier; edge LAN: IPv6): to the agent */
	REASON_DROP_MISS_RATE,   /* a miss over its source's rate (miss.h): dropped */
	REASON_MAX,
};

/* The counters have room for more reasons than there are: the map is
 * pinned (xdp/pin.go) and its size is part of the pinned layout, so a
 * build that appends a reason still takes over the counters of the one
 * before it, instead of refusing them and ending the flows pinned beside. */
#define REASON_SLOTS 64
build_bug_on(REASON_MAX > REASON_SLOTS);

/* Per-CPU packet counters by reason, read and summed by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} reasons SEC(".maps");

static __always_inline void count_reason(enum reason r)
{
	__u32 key = r;
	__u64 *n = map_lookup(&reasons, &key);

	if (n)
		*n += 1;
}

/* Keep the enum in BTF so bpf2go emits it for the Go mirror check. */
const enum reason *unused_reason __attribute__((unused));
