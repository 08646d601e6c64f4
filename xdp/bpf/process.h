/* process.h: one packet through the datapath (unmap_process): parse, the
 * one flow lookup, translation, counters, forwarding. Shared by the entry
 * programs (unmap.c) and the benchmark variants (bench.c), which build it
 * with parts switched off to measure what each part costs. */
#pragma once

#include "common.h"
#include "reasons.h"
#include "types.h"
#include "config.h"
#include "maps.h"
#include "lookup.h"
#include "parse.h"
#include "translate.h"
#include "nat.h"
#include "icmp.h"
#include "fwd.h"
#include "martian.h"
#include "miss.h"
#include "cgnat.h"

/* Does e's action fit packet p (family, protocol)? */
static __always_inline int fits(const struct pkt *p, const struct flow_entry *e)
{
	__u8 proto = p->key.proto;

	switch (e->action) {
	case ACT_XLAT64:
		return p->key.family == 6 &&
		       (((proto == IPPROTO_TCP || proto == IPPROTO_UDP) && e->proto == proto) ||
			(proto == IPPROTO_ICMPV6 && e->proto == IPPROTO_ICMP));
	case ACT_XLAT46:
		return p->key.family == 4 &&
		       (((proto == IPPROTO_TCP || proto == IPPROTO_UDP) && e->proto == proto) ||
			(proto == IPPROTO_ICMP && e->proto == IPPROTO_ICMPV6));
	case ACT_WRAP64:
		return p->key.family == 6;
	case ACT_NAPT44:
		return p->key.family == 4;
	case ACT_UNWRAP46:
		return p->key.family == 4 && proto == IPPROTO_UDP;
	}
	return 0;
}

/* UDP without a checksum: IPv6 forbids it and native IPv4 carriers are
 * ours, which always carry one. NAPT keeps a zero; a UDP carrier has none. */
static __always_inline int bad_zero_csum(const struct pkt *p, const struct flow_entry *e)
{
	__u8 *l4 = p->data + (p->key.family == 4 ? L4_4 : L4_6);

	if (p->key.proto != IPPROTO_UDP)
		return 0;
	if ((void *)(l4 + 8) > p->end)
		return 1;
	if (*(__u16 *)(l4 + 6))
		return 0;
	return p->key.family == 6 || e->action == ACT_XLAT46;
}

/* A carrier keepalive: a UDP datagram whose payload is exactly the 8
 * bytes "unmap-ka", sent by the edge on an idle UDP carrier to refresh the
 * CGNAT's mapping, or those 8 bytes and the carrier's bind token (a token
 * keepalive: the proof that binds a carrier, or re-binds one the CGNAT
 * moved). It arrives on a carrier (an entry back to the flow) and goes no
 * further, so a proof's secret never leaves. An IPv4 flow's carrier
 * (NAPT44) is told from other NAPT by its key, a carrier key of this end. */
static __always_inline int is_keepalive(const struct pkt *p, const struct flow_entry *e)
{
	static const char magic[8] = "unmap-ka";
	__u8 *l4 = p->data + L4_4;
	if (p->key.family != 4 || p->key.proto != IPPROTO_UDP)
		return 0;
	if (e->action != ACT_XLAT46 && e->action != ACT_UNWRAP46 &&
	    (e->action != ACT_NAPT44 || carrier_slot_index(&p->key) < 0))
		return 0;
	if ((void *)(l4 + 16) > p->end ||
	    (*(__u16 *)(l4 + 4) != bpf_htons(16) && *(__u16 *)(l4 + 4) != bpf_htons(24)))
		return 0;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (l4[8 + i] != (__u8)magic[i])
			return 0;
	return 1;
}

/* The entry flags a plain TCP segment sets: FIN, RST (see types.h). */
static __always_inline __u16 tcp_end(const struct pkt *p)
{
	__u8 *fl = (__u8 *)p->data + (p->key.family == 4 ? L4_4 : L4_6) + 13;

	if (p->key.proto != IPPROTO_TCP || p->icmp_err || (void *)(fl + 1) > p->end)
		return 0;
	return (*fl & 0x01 ? ENTRY_FIN : 0) | (*fl & 0x04 ? ENTRY_RST : 0);
}

/* A packet the program takes to the agent: its source checked first
 * (martian.h), then handed over. r is why it goes (MISS or *_TO_AGENT). */
static __always_inline int to_agent(struct xdp_md *ctx, enum role role, struct pkt *p,
				    enum reason r, int hit)
{
	enum reason m = hit ? REASON_NONE : martian_src(p);

	if (m == REASON_NONE)
		m = foreign_src(role, p);
	if (m != REASON_NONE)
		return verdict(m);
	m = send_miss(ctx, role, p);
	return verdict(m == REASON_MISS ? r : m);
}

/* unmap_process with the martian check of established packets
 * switchable (filter = 0), so the benchmark variants can measure it
 * against the same program without it; the entry programs pass 1. */
static __always_inline int unmap_process_filtered(struct xdp_md *ctx, enum role role, int filter)
{
	struct pkt p = {};
	struct flow_entry *e;
	enum reason r;
	__u16 end = 0;

	r = parse(ctx, &p);
	if (r != REASON_NONE)
		return verdict(role == ROLE_RELAY_EXT ? cg_ext_unparsed(&p, r) : r);
	/* The pool's subscriber ports are the CGNAT's: never in the flow
	 * table (the pool split keeps carriers and sites out of them). */
	if (role == ROLE_RELAY_EXT && cfg_cg_subs) {
		long off = cg_inbound_port(&p);

		if (off >= 0)
			return cg_inbound(ctx, &p, off);
	}
	e = flow_lookup(&p.key);
	if (!e) {
		r = classify_miss(role, &p);
		if (r == REASON_MISS || r == REASON_TTL_TO_AGENT)
			return to_agent(ctx, role, &p, r, 0);
		return verdict(r);
	}
	if (filter) {
		r = martian_src(&p);
		if (r != REASON_NONE)
			return verdict(r);
	}
	if (role == ROLE_RELAY_EXT || role == ROLE_EDGE_LAN) {
		r = slow_path(role, &p);
		if (r == REASON_ICMP_ERR_TO_AGENT || r == REASON_TTL_TO_AGENT)
			return to_agent(ctx, role, &p, r, 1);
		if (r != REASON_NONE)
			return verdict(r);
	}
	/* Errors about UDP carriers stay with the stack. */
	if (p.icmp_err && (e->action == ACT_WRAP64 || e->action == ACT_UNWRAP46))
		return verdict(REASON_PASS_ICMP_OTHER);
	if (!fits(&p, e))
		return verdict(REASON_DROP_BAD_ENTRY);
	if (p.ttl <= 1)
		return verdict(REASON_PASS_TTL);
	if (p.icmp_err) {
		if (e->action == ACT_XLAT64)
			r = err64(ctx, &p, e);
		else if (e->action == ACT_XLAT46)
			r = err46(ctx, &p, e, bpf_htonl(WKP_HI), 0, 0);
		else
			r = err_napt(&p, e);
		goto done;
	}
	if (bad_zero_csum(&p, e))
		return verdict(REASON_DROP_UDP_ZERO_CSUM);
	if (is_keepalive(&p, e))
		return verdict(REASON_KEEPALIVE);
	end = tcp_end(&p); /* before translation moves the header */
	switch (e->action) {
	case ACT_XLAT64:
		r = xlat64(ctx, &p, e);
		break;
	case ACT_XLAT46:
		r = xlat46(ctx, &p, e);
		break;
	case ACT_NAPT44:
		r = napt44(&p, e);
		break;
	case ACT_WRAP64:
		r = wrap64(ctx, &p, e);
		break;
	default:
		r = unwrap46(ctx, &p, e);
	}
done:
	if (r != REASON_NONE)
		return verdict(r);
#ifndef UNMAP_BENCH_NO_FLOW_COUNTERS
	e->packets++;
	e->bytes += p.len;
	e->flags |= end;
#else
	(void)end;
#endif
	return forward(ctx, e->action == ACT_XLAT64 || e->action == ACT_WRAP64 ||
				    e->action == ACT_NAPT44);
}

static __always_inline int unmap_process(struct xdp_md *ctx, enum role role)
{
	return unmap_process_filtered(ctx, role, 1);
}
