/* livegen.c: the CGNAT bench's traffic, in BPF.
 *
 * gen_udp is run by BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the
 * subscriber's veth: each run is one frame, sent with XDP_TX to the NAT
 * on the other end. The kernel's page pool hands frames back without
 * rewriting them, and veth passes pages to its peer without a copy, so
 * a frame comes back as the NAT left it (source translated, TTL down,
 * MACs swapped): every run therefore writes the whole frame again from
 * the template, then the flow's source address and port and both
 * checksums.
 *
 * count sits on the NAT's next hop (inet's veth from the relay) and
 * counts the bench's packets as they arrive: translated (source in the
 * pool) or not; it drops them there, so what is counted is what the NAT
 * delivered, not what a router beyond it could forward (or, told to,
 * lets them go on to a second counter at their destination).
 *
 * fwd redirects every frame to one interface untouched: the floor of the
 * chain (generator, two veth hops, counter) without any NAT. fwd_fib
 * does what a router in XDP does before it: a FIB lookup for the next
 * hop and its MACs, to tell that lookup's part of a NAT's time. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "GPL";

#define HDR_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))

/* gen_cfg: written by Go before each run (livegen.go, Config). */
struct gen_config {
	__u8 frame[64];   /* the frame: Ethernet + IPv4 + UDP, zero payload */
	__u32 src_base;   /* first subscriber address, host order */
	__u32 subs;       /* subscribers the flows are spread over */
	__u32 sport_base; /* first source port, host order */
	__u32 pad;
	__u64 first;      /* flow index of the first packet */
	__u64 flows;      /* flows cycled; 0: every packet a new flow */
};

_Static_assert(HDR_LEN == 42, "header template");
_Static_assert(sizeof(struct gen_config) == 96, "gen_config layout");

#define FRAME_LEN 64

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_cfg SEC(".maps");

/* gen_sent: frames made since Go last reset it (one generator at a time). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_sent SEC(".maps");

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

SEC("xdp")
int gen_udp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_config *c = bpf_map_lookup_elem(&gen_cfg, &zero);
	__u64 *sent = bpf_map_lookup_elem(&gen_sent, &zero);

	if (!c || !sent || data + FRAME_LEN > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, c->frame, FRAME_LEN);

	__u64 n = (*sent)++;
	__u64 subs = c->subs ? c->subs : 1;
	__u64 i = c->first + (c->flows ? n % c->flows : n);
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *udp = (void *)(ip + 1);

	ip->saddr = bpf_htonl(c->src_base + (__u32)(i % subs));
	udp->source = bpf_htons((__u16)(c->sport_base + i / subs));

	/* Sums of raw network-order words: the ones'-complement sum
	 * commutes with byte swapping, so nothing is swapped. The template
	 * has both checksums zero. */
	const __u32 *w = (const __u32 *)ip;
	ip->check = (__u16)~fold((__u64)w[0] + w[1] + w[2] + w[3] + w[4]);

	__u8 tail[4] = {0, IPPROTO_UDP};
	__builtin_memcpy(&tail[2], &udp->len, 2);
	const __u32 *u = (const __u32 *)udp;
	__u64 s = (__u64)ip->saddr + ip->daddr + *(__u32 *)tail + u[0] + u[1];
	/* The payload is zeros: nothing to add. */
	__u16 sum = (__u16)~fold(s);
	udp->check = sum ? sum : 0xffff;
	return XDP_TX;
}

/* count_cfg: what the bench's packets look like once through the NAT. */
struct count_config {
	__u32 dst;     /* network order */
	__u32 pool_lo; /* host order */
	__u32 pool_hi; /* host order */
	__u16 dport;   /* network order */
	__u16 pass;    /* 1: let them go on (to be counted further on) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct count_config);
} count_cfg SEC(".maps");

/* counts: [0] translated (source in the pool), [1] not translated. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 zero = 0;

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	struct count_config *c = bpf_map_lookup_elem(&count_cfg, &zero);
	if (!c || ip->daddr != c->dst || udp->dest != c->dport)
		return XDP_PASS;
	__u32 src = bpf_ntohl(ip->saddr);
	__u32 k = src >= c->pool_lo && src <= c->pool_hi ? 0 : 1;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);
	if (v)
		(*v)++;
	return c->pass ? XDP_PASS : XDP_DROP;
}

/* fwd_ifindex: where fwd sends every frame. */
volatile const __u32 fwd_ifindex;

SEC("xdp")
int fwd(struct xdp_md *ctx)
{
	return bpf_redirect(fwd_ifindex, 0);
}

#define AF_INET 2

SEC("xdp")
int fwd_fib(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct bpf_fib_lookup fib = {};

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	return bpf_redirect(fib.ifindex, 0);
}
