/* miss.h: what a packet without a flow entry is (the router's, unmap's or
 * someone else's) and the hand-over of unmap's misses to the agent through
 * the misses ring buffer (bytes included, bounded by MISS_SNAP), at most
 * at a rate per source, so one source cannot fill the ring for all. */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
#include "martian.h"
#include "parse.h"
#include "reasons.h"

static __always_inline enum reason classify_miss(enum role role, struct pkt *p)
{
	__u32 dst[4] = {};
	enum reason r = martian_dst(p);

	if (r != REASON_NONE)
		return r;
	if (p->key.family == 4) {
		dst[2] = bpf_htonl(0xffff); /* ::ffff:a.b.c.d */
		dst[3] = p->key.daddr[0];
	} else {
		__builtin_memcpy(dst, p->key.daddr, 16);
	}
	struct lpm_key k = { .prefixlen = 128 };

	__builtin_memcpy(k.addr, dst, 16);
	if (role == ROLE_EDGE_LAN) {
		/* The router's own addresses, and the site's other segments
		 * (the edge routes between its LANs), are not unmap's. */
		if (map_lookup(&local_addrs, dst) ||
		    map_lookup(&site_prefixes, &k))
			return REASON_PASS_LOCAL;
		/* TCP and UDP only: an ICMP echo carrier's one identifier is
		 * rewritten by the CGNAT, so ping keeps the ordinary path. */
		if (p->key.family == 4 && (!sw_lan_v4 || p->key.proto == IPPROTO_ICMP))
			return REASON_PASS_NOT_OURS;
		/* IPv4 link-local is never forwarded (RFC 3927): not through
		 * the relay either, whose own 169.254.169.254 may be a cloud's
		 * metadata service. */
		if (p->key.family == 4 && (p->key.daddr[0] & 0xffff) == 0xfea9)
			return REASON_DROP_MARTIAN_DST;
		/* A new flow's IPv6 packet that cannot leave the edge: the
		 * agent answers time exceeded (the stack, with no IPv6 route
		 * out, would answer no route). */
		if (p->ttl <= 1)
			return p->key.family == 6 ? REASON_TTL_TO_AGENT : REASON_PASS_TTL;
		return REASON_MISS;
	}
	/* A TCP or UDP packet to a carrier port is a carrier's first packet;
	 * an ICMP echo without an entry is the router's own (see the model). */
	if (p->key.family == 4 && cfg_carrier_addr && p->key.daddr[0] == cfg_carrier_addr) {
		__u8 proto = p->key.proto;
		__u16 port = bpf_ntohs(p->key.dport);

		if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP) &&
		    port && port >= cfg_port_lo && port <= cfg_port_hi)
			return REASON_MISS;
	}
	if (role == ROLE_RELAY_EXT && map_lookup(&site_prefixes, &k))
		return REASON_MISS;
	return REASON_PASS_NOT_OURS;
}

/* May p's source hand one more packet to the agent? A token bucket per
 * source (miss_srcs), kept as the time it is full again (GCRA): a packet
 * takes a token, cfg_miss_ns of that time, if the bucket is no more than
 * cfg_miss_depth_ns from full after it. The source is the key's: an ICMP
 * error's key is the packet it quotes, reversed, so errors about one flow
 * count against its far end. An IPv6 source from the Internet is grouped
 * by /64, because a host may take any address of its /64 (privacy
 * addresses, RFC 8981) and anything finer is free to dodge; at the edge
 * LAN each IPv6 host counts alone, or the site's whole segment would
 * share one bucket. An IPv4 address is one host, or one NAT. A carrier's
 * first packet from an address in miss_exempt (a CGNAT that an edge's
 * session comes from) is not bounded: every site behind it opens its
 * flows that way. Plain loads and stores, no atomics: two CPUs that let
 * a packet through at the same instant may both write the same time, one
 * token lost to the bucket, and a refusal writes nothing. */
static __always_inline int miss_allowed(const struct pkt *p, enum role role)
{
	struct miss_src src = { .family = p->key.family };
	__u64 now, tat, next, *b;

	if (!cfg_miss_ns)
		return 1;
	src.addr[0] = p->key.saddr[0];
	if (p->key.family == 4) {
		if (cfg_carrier_addr && p->key.daddr[0] == cfg_carrier_addr &&
		    map_lookup(&miss_exempt, &p->key.saddr[0]))
			return 1;
		src.bits = 32;
	} else if (role == ROLE_EDGE_LAN) {
		src.bits = 128;
		src.addr[1] = p->key.saddr[1];
		src.addr[2] = p->key.saddr[2];
		src.addr[3] = p->key.saddr[3];
	} else {
		src.bits = 64;
		src.addr[1] = p->key.saddr[1];
	}
	now = bpf_ktime_get_ns();
	b = map_lookup(&miss_srcs, &src);
	if (!b) {
		/* A new source (or one the LRU forgot): a full bucket, less
		 * this packet's token. If the insert fails, the ring still
		 * bounds what passes. */
		next = now + cfg_miss_ns;
		bpf_map_update_elem(&miss_srcs, &src, &next, BPF_ANY);
		return 1;
	}
	tat = *b;
	next = (tat > now ? tat : now) + cfg_miss_ns;
	if (next - now > cfg_miss_depth_ns)
		return 0;
	*b = next;
	return 1;
}

static __always_inline enum reason send_miss(struct xdp_md *ctx, enum role role, struct pkt *p)
{
	struct miss_rec *rec;
	__u32 cap = p->len;

	if (cap > MISS_SNAP)
		cap = MISS_SNAP;
	if (cap < ETH_LEN)
		return REASON_DROP_HELPER;
	if (!miss_allowed(p, role))
		return REASON_DROP_MISS_RATE;
	rec = bpf_ringbuf_reserve(&misses, sizeof(*rec), 0);
	if (!rec)
		return REASON_DROP_MISS_FULL;
	rec->ifindex = ctx->ingress_ifindex;
	rec->len = p->len;
	rec->caplen = cap;
	rec->role = role;
	rec->pad = 0;
	rec->pad2 = 0;
	if (bpf_xdp_load_bytes(ctx, 0, rec->data, cap)) {
		bpf_ringbuf_discard(rec, 0);
		return REASON_DROP_HELPER;
	}
	bpf_ringbuf_submit(rec, 0);
	return REASON_MISS;
}
