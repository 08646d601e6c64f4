/* martian.h: ingress filtering (BCP 38/84): addresses no packet unmap
 * carries may have, each class counted under a reason of its own. The
 * model is session/xlat/martian.go; the order of the checks is its.
 *
 * Three checks, each where it costs least:
 * - martian_src: the outer source's class (unspecified, loopback,
 *   multicast, link-local, IPv4 inside IPv6, reserved IPv4, this end's
 *   carrier address). Compares only, on every packet unmap takes: each
 *   hit, and each miss before it goes to the agent.
 * - martian_dst: destinations that are never valid on a wire (IPv6
 *   ::/96 and ::ffff:0:0/96, IPv4 0/8 and 127/8), on a miss before the
 *   address maps are consulted: those hold IPv4 as ::ffff:a.b.c.d, so an
 *   IPv6 packet to ::ffff:<a site's IPv4> would otherwise be taken for
 *   one to the site. Multicast and link-local destinations already pass
 *   to the stack in parse.h (PASS_LOCAL), so none reaches a site.
 * - foreign_src, at the relay, on what goes to the agent (misses, and
 *   the ICMPv6 errors and expired carriers it relays): a source inside a
 *   site's prefix or public IPv4, or one of the relay's own addresses
 *   (local_addrs). Two map lookups, so never on an established packet,
 *   which keeps its one lookup: an entry's key was accepted by this check
 *   when its flow was offered, or named by the site itself. */
#pragma once

#include "common.h"
#include "config.h"
#include "maps.h"
#include "parse.h"
#include "reasons.h"

/* An IPv4 address's class; a is in network order. */
static __always_inline enum reason martian4(__u32 a)
{
	__u8 b0 = a & 0xff, b1 = (a >> 8) & 0xff;

	if (b0 == 0)
		return REASON_DROP_MARTIAN_UNSPECIFIED;
	if (b0 == 127)
		return REASON_DROP_MARTIAN_LOOPBACK;
	if (b0 == 169 && b1 == 254)
		return REASON_DROP_MARTIAN_LINK_LOCAL;
	if (b0 >= 240)
		return REASON_DROP_MARTIAN_RESERVED;
	if (b0 >= 224)
		return REASON_DROP_MARTIAN_MULTICAST;
	return REASON_NONE;
}

/* An IPv6 address's class; s is its four words in network order. */
static __always_inline enum reason martian6(const __u32 *s)
{
	__u32 w0 = s[0];

	if ((w0 & 0xff) == 0xff)
		return REASON_DROP_MARTIAN_MULTICAST;
	if ((w0 & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
		return REASON_DROP_MARTIAN_LINK_LOCAL;
	if (w0 | s[1])
		return REASON_NONE;
	if (s[2] == 0) {
		if (s[3] == 0)
			return REASON_DROP_MARTIAN_UNSPECIFIED;
		if (s[3] == bpf_htonl(1))
			return REASON_DROP_MARTIAN_LOOPBACK;
		return REASON_DROP_MARTIAN_MAPPED; /* IPv4-compatible (deprecated) */
	}
	if (s[2] == bpf_htonl(0xffff))
		return REASON_DROP_MARTIAN_MAPPED;
	return REASON_NONE;
}

/* The outer source of p: the key's, except in an ICMP error, whose key is
 * the packet it quotes. */
static __always_inline enum reason martian_src(const struct pkt *p)
{
	const __u32 *s = p->key.saddr;

	if (p->icmp_err) {
		__u8 *ip = p->data + ETH_LEN;

		if ((void *)(ip + 40) > p->end)
			return REASON_DROP_TRUNC_L3; /* parse saw more: cannot happen */
		s = (const __u32 *)(ip + (p->key.family == 4 ? 12 : 8));
	}
	if (p->key.family == 4) {
		__u32 a = s[0];
		enum reason r = martian4(a);

		if (r == REASON_NONE && cfg_carrier_addr && a == cfg_carrier_addr)
			return REASON_DROP_MARTIAN_OWN;
		return r;
	}
	return martian6(s);
}

/* The key's destination, if no wire may carry it (see above). */
static __always_inline enum reason martian_dst(const struct pkt *p)
{
	const __u32 *d = p->key.daddr;

	if (p->key.family == 4) {
		__u8 b0 = d[0] & 0xff;

		return b0 == 0 || b0 == 127 ? REASON_DROP_MARTIAN_DST : REASON_NONE;
	}
	return d[0] == 0 && d[1] == 0 && (d[2] == 0 || d[2] == bpf_htonl(0xffff)) ?
		REASON_DROP_MARTIAN_DST : REASON_NONE;
}

/* At the relay, before a packet goes to the agent: its outer source is
 * not a site's nor the relay's own. */
static __always_inline enum reason foreign_src(enum role role, const struct pkt *p)
{
	__u8 *ip = p->data + ETH_LEN;
	struct lpm_key k = { .prefixlen = 128 };

	if (role != ROLE_RELAY_EXT)
		return REASON_NONE;
	if ((void *)(ip + (p->key.family == 4 ? 20 : 40)) > p->end)
		return REASON_DROP_TRUNC_L3; /* parse saw more: cannot happen */
	if (p->key.family == 4) {
		k.addr[2] = bpf_htonl(0xffff); /* ::ffff:a.b.c.d */
		k.addr[3] = *(__u32 *)(ip + 12);
	} else {
		if ((void *)(ip + 40) > p->end)
			return REASON_DROP_TRUNC_L3;
		__builtin_memcpy(k.addr, ip + 8, 16);
	}
	if (map_lookup(&site_prefixes, &k))
		return REASON_DROP_MARTIAN_SITE;
	if (map_lookup(&local_addrs, k.addr))
		return REASON_DROP_MARTIAN_OWN;
	return REASON_NONE;
}
