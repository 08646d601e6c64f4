/* reasons.h: why a packet left the fast path (enum reason), what the
 * program then does with it (each reason's XDP action, named beside it),
 * and the per-CPU counter keyed by it. Every XDP_PASS and XDP_DROP the
 * datapath decides is counted here under one name; the Go mirror is
 * xlat.Reason (same numbers, names and actions), checked against this
 * header's BTF by TestReasonsMatchC. */
#pragma once

#include "common.h"

/* The reasons, one line each: name, the XDP action a packet of that
 * reason gets, and what it means. The order is the counters' index, so
 * a new reason is appended (the counters are pinned); its action is
 * written out with it, never implied by where it sits. XDP_DROP also
 * covers a packet consumed or handed to the agent: it goes no further. */
#define UNMAP_REASONS(X) \
	X(NONE,               XDP_PASS) /* translated and forwarded: counted per flow (this action unused) */ \
	X(PASS_NOT_IP,        XDP_PASS) /* not IPv4/IPv6 (ARP, LLDP, VLAN...) or runt */ \
	X(PASS_LOCAL,         XDP_PASS) /* for the router itself: own, link-local, multicast */ \
	X(PASS_NOT_OURS,      XDP_PASS) /* no flow entry and outside unmap's ranges */ \
	X(PASS_FRAGMENT,      XDP_PASS) /* IPv4 fragment or IPv6 fragment header */ \
	X(PASS_IP_OPTIONS,    XDP_PASS) /* IPv4 header with options (IHL > 5) */ \
	X(PASS_IPV6_EXT,      XDP_PASS) /* IPv6 extension header chain */ \
	X(PASS_TTL,           XDP_PASS) /* TTL/hop limit <= 1: the stack sends time exceeded */ \
	X(PASS_ICMP_OTHER,    XDP_PASS) /* ICMP other than echo (errors too): left to the stack */ \
	X(PASS_NO_NEIGH,      XDP_PASS) /* translated; FIB has no neighbour yet: stack resolves */ \
	X(PASS_FIB,           XDP_PASS) /* translated; FIB gave no XDP route: stack decides */ \
	X(DROP_TRUNC_L3,      XDP_DROP) /* frame shorter than its IP header */ \
	X(DROP_BAD_IP,        XDP_DROP) /* wrong IP version or IHL < 5 */ \
	X(DROP_BAD_LEN,       XDP_DROP) /* IP or UDP length disagrees with the frame */ \
	X(DROP_BAD_CSUM,      XDP_DROP) /* IPv4 header checksum wrong */ \
	X(DROP_TRUNC_L4,      XDP_DROP) /* L4 header does not fit in the IP payload */ \
	X(DROP_UDP_ZERO_CSUM, XDP_DROP) /* UDP without checksum where one is needed */ \
	X(DROP_BAD_ENTRY,     XDP_DROP) /* flow entry's action does not fit this packet */ \
	X(DROP_HELPER,        XDP_DROP) /* a BPF helper failed (adjust_head) */ \
	X(MISS,               XDP_DROP) /* ours but no entry: sent to the agent, not forwarded */ \
	X(DROP_MISS_FULL,     XDP_DROP) /* miss ring buffer full: dropped */ \
	X(KEEPALIVE,          XDP_DROP) /* an edge's carrier keepalive: consumed */ \
	X(ICMP_ERR_TO_AGENT,  XDP_DROP) /* relay: ICMPv6 error from a router beyond it: to the agent */ \
	X(TTL_TO_AGENT,       XDP_DROP) /* TTL ran out here (relay: a carrier; edge LAN: IPv6): to the agent */ \
	X(DROP_MISS_RATE,     XDP_DROP) /* a miss over its source's rate (miss.h): dropped */ \
	X(DROP_MARTIAN_UNSPECIFIED, XDP_DROP) /* source :: or 0.0.0.0/8 (martian.h) */ \
	X(DROP_MARTIAN_LOOPBACK,    XDP_DROP) /* source ::1 or 127.0.0.0/8 */ \
	X(DROP_MARTIAN_MULTICAST,   XDP_DROP) /* source ff00::/8 or 224.0.0.0/4 */ \
	X(DROP_MARTIAN_LINK_LOCAL,  XDP_DROP) /* source fe80::/10 or 169.254.0.0/16 */ \
	X(DROP_MARTIAN_MAPPED,      XDP_DROP) /* IPv6 source with an IPv4 inside: ::ffff:0:0/96, ::/96 */ \
	X(DROP_MARTIAN_RESERVED,    XDP_DROP) /* source 240.0.0.0/4, 255.255.255.255 among them */ \
	X(DROP_MARTIAN_OWN,         XDP_DROP) /* source is this router's own carrier (or, relay, local) address */ \
	X(DROP_MARTIAN_SITE,        XDP_DROP) /* relay: source inside a site's prefix or public IPv4 */ \
	X(DROP_MARTIAN_DST,         XDP_DROP) /* destination no wire may carry (martian.h); edge LAN: IPv4 link-local */ \
	X(CGNAT_NO_BLOCK,           XDP_DROP) /* subscriber: new mapping, no free port in its blocks, the agent may grant one: to the agent */ \
	X(CGNAT_REFUSED,            XDP_TX)   /* subscriber: new mapping, quota or pool spent: answered ICMP admin-prohibited */ \
	X(DROP_CGNAT_REFUSED_RATE,  XDP_DROP) /* the same, over the answers' rate bound: dropped unanswered */ \
	X(DROP_CGNAT_SOURCE,        XDP_DROP) /* subscriber interface: IPv4 source outside the inside prefix */ \
	X(DROP_CGNAT_PROTO,         XDP_DROP) /* subscriber: not TCP, UDP, ICMP echo request or an ICMP error the CGNAT rewrites */ \
	X(DROP_CGNAT_FRAGMENT,      XDP_DROP) /* IPv4 fragment from a subscriber or to the pool: not translated */ \
	X(DROP_CGNAT_OPTIONS,       XDP_DROP) /* IPv4 options from a subscriber: not translated */ \
	X(DROP_CGNAT_NOT_SYN,       XDP_DROP) /* subscriber: TCP without a mapping that is not a SYN */ \
	X(DROP_CGNAT_NO_MAPPING,    XDP_DROP) /* to a pool port no mapping holds; from a subscriber: an echo reply or ICMP error without one */ \
	X(DROP_CGNAT_FILTERED,      XDP_DROP) /* inbound to a mapping, refused by the address(-and-port)-dependent filter */ \
	X(DROP_NAT64_SOURCE,        XDP_DROP) /* subscriber: IPv6 to the NAT64 prefix from outside the inside IPv6 prefix */ \
	X(DROP_NAT64_DST,           XDP_DROP) /* subscriber: NAT64 to an IPv4 it does not reach (pool, inside, gateway; non-global under 64:ff9b::/96) */ \
	X(DROP_NAT64_EXT,           XDP_DROP) /* subscriber: IPv6 with extension headers to the NAT64 prefix */ \
	X(DROP_NAT64_HAIRPIN,       XDP_DROP) /* subscriber: NAT64 to a pool address, or NAT44 hairpin to a NAT64 mapping: not translated */ \
	X(NAT64_TOO_BIG,            XDP_TX)   /* inbound to a NAT64 mapping, too big for the subscriber link once IPv6, DF: answered fragmentation needed */ \
	X(DROP_NAT64_TOO_BIG,       XDP_DROP) /* the same without DF (not fragmented), or an ICMP error that would grow past it */ \
	X(DROP_BAD_TCP_OFFSET,      XDP_DROP) /* TCP data offset < 5, or the header (offset x 4) past the IP packet (parse.h) */ \
	X(DROP_CGNAT_BUSY,          XDP_DROP) /* subscriber: new mapping, its cg_table bucket's lock held by another CPU past the tries */

enum reason {
#define X(name, action) REASON_##name,
	UNMAP_REASONS(X)
#undef X
	REASON_MAX,
};

/* Each reason's action, as an enum of its own for the Go side: BTF keeps
 * it, and TestReasonsMatchC reads it instead of trusting any order. */
enum reason_action {
#define X(name, action) REASON_ACTION_##name = action,
	UNMAP_REASONS(X)
#undef X
};

/* Every action is one of the three a reason may have (XDP_TX: the
 * packet is answered on the interface it came in on). */
#define X(name, action) \
	_Static_assert((action) == XDP_PASS || (action) == XDP_DROP || (action) == XDP_TX, \
		       "reason " #name ": action must be XDP_PASS, XDP_DROP or XDP_TX");
UNMAP_REASONS(X)
#undef X

/* The counters have room for more reasons than there are: the map is
 * pinned (xdp/pin.go) and its size is part of the pinned layout, so a
 * build that appends a reason still takes over the counters of the one
 * before it, instead of refusing them and ending the flows pinned beside. */
#define REASON_SLOTS 64
build_bug_on(REASON_MAX > REASON_SLOTS);

/* What the program returns for a packet it leaves with reason r: the
 * drop reasons, and the answered ones, as one bit each of a constant, so
 * shifts and tests (reason numbers are below 64, checked above). */
#define DROPS(name, action) | ((action) == XDP_DROP ? 1ULL << REASON_##name : 0)
#define TXS(name, action) | ((action) == XDP_TX ? 1ULL << REASON_##name : 0)
static __always_inline int reason_action(enum reason r)
{
	__u32 i = r & (REASON_SLOTS - 1);

	if (((0ULL UNMAP_REASONS(DROPS)) >> i) & 1)
		return XDP_DROP;
	return ((0ULL UNMAP_REASONS(TXS)) >> i) & 1 ? XDP_TX : XDP_PASS;
}
#undef DROPS
#undef TXS

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

/* Count a packet's reason and return its action. */
static __always_inline int verdict(enum reason r)
{
	count_reason(r);
	return reason_action(r);
}

/* Keep the enums in BTF so bpf2go emits them and the Go mirror check
 * can read them. */
const enum reason *unused_reason __attribute__((unused));
const enum reason_action *unused_reason_action __attribute__((unused));
