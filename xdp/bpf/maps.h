/* maps.h: the shared table layout (flow keys and entries, mirrored in Go
 * by session/xlat.Key and Entry), the maps, load-time configuration and
 * run-time switches. */
#pragma once

#include "common.h"

/* What an entry does to a matching packet (Go: xlat.Action). */
enum action {
	ACT_NONE = 0,
	ACT_XLAT64,   /* IPv6 flow -> native IPv4 carrier */
	ACT_XLAT46,   /* native IPv4 carrier -> IPv6 flow */
	ACT_NAPT44,   /* IPv4 -> IPv4, addresses and ports rewritten */
	ACT_WRAP64,   /* IPv6 flow -> IPv4 + UDP carrier */
	ACT_UNWRAP46, /* IPv4 + UDP carrier -> IPv6 flow */
};

/* Which interface a program serves (Go: xlat.Role). */
enum role {
	ROLE_EDGE_LAN = 0,
	ROLE_EDGE_WAN,
	ROLE_RELAY_EXT,
};

/* A packet as looked up: protocol, addresses and ports on the wire at
 * ingress (ICMP echo: identifier as source port of a request, destination
 * port of a reply). IPv4 addresses fill word 0, the rest is zero. */
struct flow_key {
	__u8 family; /* 4 or 6 */
	__u8 proto;
	__be16 sport;
	__be16 dport;
	__u16 pad;
	__u32 saddr[4];
	__u32 daddr[4];
} __attribute__((aligned(8))); /* read as five words by the flow table */
build_bug_on(sizeof(struct flow_key) != 40);

/* Entry flags the program sets on a translated TCP segment with FIN or
 * RST (Go: xlat.EndFIN, EndRST): the agents time closed connections out
 * as transitory. */
#define ENTRY_FIN (1 << 0)
#define ENTRY_RST (1 << 1)

/* An IPv4 key as the flows4 hash holds it: the tuple alone, 16 bytes
 * where struct flow_key needs 40 for IPv6 (a shorter key hashes faster). */
struct flow_key4 {
	__u8 proto;
	__u8 pad;
	__be16 sport;
	__be16 dport;
	__u16 pad2;
	__u32 saddr;
	__u32 daddr;
};
build_bug_on(sizeof(struct flow_key4) != 16);

/* What a key maps to; the counters are this CPU's (per-CPU hash). */
struct flow_entry {
	__u8 action;  /* enum action */
	__u8 proto;   /* protocol after translation (see xlat.Entry) */
	__u16 flags;
	__be16 sport; /* ports (echo identifier) the packet leaves with */
	__be16 dport;
	__u32 saddr[4];
	__u32 daddr[4];
	__u64 packets;
	__u64 bytes;
};
build_bug_on(sizeof(struct flow_entry) != 56);

/* One way of a flow bucket: a key and its entry. A way is empty while
 * the key's first word is zero (family 0 matches no packet). */
struct flow_way {
	struct flow_key k;
	struct flow_entry e;
};
build_bug_on(sizeof(struct flow_way) != 96);

#define FLOW_WAYS 4

/* A bucket of the flow table: the keys whose hash picks it, up to
 * FLOW_WAYS, and whether more of them live in the spill hashes. */
struct flow_bucket {
	struct flow_way w[FLOW_WAYS];
	__u32 spill; /* keys of this bucket in flows/flows4 */
	__u32 pad;
};
build_bug_on(sizeof(struct flow_bucket) != 392);

/* The flow table: every key that is not a carrier of this end (those
 * are in carriers), in the bucket its seeded hash picks (lookup.h). An
 * array lookup the verifier inlines, and a compare of five words, where
 * a kernel hash costs a jhash, a bucket walk and a memcmp behind
 * retpolines. Shared, not per-CPU, and mmapable: the agent writes ways
 * in place with ordered stores (xdp/table.go), so publishing a key never
 * rewrites the counters of its neighbours. Sized at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct flow_bucket);
} flowtab SEC(".maps");

/* IPv6 keys whose bucket is full: the spill of the flow table. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_entry);
} flows SEC(".maps");

/* IPv4 keys whose bucket is full (IPv4 flows: NAPT), and carriers whose
 * slot holds another key (lookup.h says which). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key4);
	__type(value, struct flow_entry);
} flows4 SEC(".maps");

/* A carrier slot: the entry of the carrier key that arrives on one local
 * carrier port (E at the edge, R at the relay) and protocol, with the
 * rest of that key (the carrier's far end: the relay's address and port
 * at the edge, the CGNAT's public address and port at the relay) checked
 * in the slot, so a foreign packet cannot use it. The first 8 bytes are
 * one word, written whole by the kernel's update: a reader sees a slot
 * used and matching only together with the entry written before it. */
struct carrier_slot {
	__u32 saddr;  /* far end's address, network order */
	__be16 sport; /* far end's port */
	__u8 used;    /* 1: the slot holds a key */
	__u8 spill;   /* 1: other keys of this port live in flows */
	struct flow_entry e;
};
build_bug_on(sizeof(struct carrier_slot) != 64);

/* Carrier keys by local port: index (protocol plane: TCP 0, UDP 1, ICMP 2)
 * x (range size) + (port - cfg_port_lo). An array lookup the verifier
 * inlines to an address computation, where a hash costs a jhash of the
 * 40-byte key and a compare. Sized at load time to the carrier range. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct carrier_slot);
} carriers SEC(".maps");

/* The router's own addresses (IPv4 as ::ffff:a.b.c.d), consulted on a miss. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32[4]);
	__type(value, __u8);
} local_addrs SEC(".maps");

struct lpm_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* Sites' prefixes and public IPv4 (as ::ffff:a.b.c.d/128), consulted on a miss. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} site_prefixes SEC(".maps");

#define MISS_SNAP 1536

/* Header of a miss record; the packet's first caplen bytes follow. */
struct miss_rec {
	__u32 ifindex;
	__u32 len;     /* whole frame */
	__u16 caplen;  /* bytes in data */
	__u8 role;
	__u8 pad;
	__u32 pad2;
	__u8 data[MISS_SNAP];
};
build_bug_on(sizeof(struct miss_rec) != 16 + MISS_SNAP);

/* Missed packets handed to the agent, which holds and re-injects them. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} misses SEC(".maps");

/* Whose misses a rate bucket counts (miss.h, miss_allowed): an IPv4
 * source address, or the /64 of an IPv6 one. */
struct miss_src {
	__u32 family; /* 4 or 6 */
	__u32 bits;   /* 32, 64 or 128: how much of the address counts */
	__u32 addr[4]; /* the address, zero past bits */
};
build_bug_on(sizeof(struct miss_src) != 24);

/* Per-source rate buckets of the miss path: the time (bpf_ktime_get_ns)
 * at which the source's bucket is full again. Shared by the CPUs, not
 * per-CPU: RSS spreads a source that varies its ports over every queue,
 * and per-CPU buckets would multiply its budget by the CPUs it reaches.
 * A shared bucket costs no cache-line bouncing: a refused packet only
 * reads it, and writes come at the configured rate. An LRU: a source
 * pushed out had a full bucket or was quiet, so forgetting it loses
 * little, and a flooding source keeps its own entry hot. Not pinned
 * (xdp/pin.go): fresh with each load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct miss_src);
	__type(value, __u64);
} miss_srcs SEC(".maps");

/* IPv4 sources whose carriers' first packets the miss bound lets
 * through (miss.h): at the relay, the CGNAT public addresses its edges'
 * sessions come from, which every new flow of every site behind them
 * crosses. Written by the agent; not pinned (xdp/pin.go). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} miss_exempt SEC(".maps");

/* Egress interfaces for XDP_REDIRECT, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* Load-time configuration, set from Go through CollectionSpec.Variables. */
volatile const __u32 cfg_carrier_addr;  /* IPv4, network order */
volatile const __u16 cfg_port_lo;        /* carrier ports, host order */
volatile const __u16 cfg_port_hi;
/* The flow table's hash (lookup.h): a random odd multiplier per key
 * word (kept beside the table when it is pinned), and log2(buckets). */
volatile const __u64 cfg_seed[5];
volatile const __u32 cfg_bucket_bits;
/* The miss path's per-source rate bucket (miss.h): the time one token
 * takes to come back (1e9 / rate, in ns; 0: no limit, for the tests that
 * compare with the reference model, which has no clock), and the time
 * the whole bucket takes (burst x cfg_miss_ns). Set by the loader, so
 * the program divides nothing. */
volatile const __u64 cfg_miss_ns;
volatile const __u64 cfg_miss_depth_ns;

/* Run-time switches, in the .data array map (a direct load, no lookup):
 * sw_fib = 0 passes translated packets to the stack instead of looking
 * up the FIB, the mode the differential tests compare bytes in. */
volatile __u32 sw_fib = 1;
/* sw_lan_v4 = 1 hands the edge LAN's IPv4 misses to the agent (the site
 * has a public IPv4 on the relay); 0 passes them to the stack, the
 * ordinary path. Set when the relay's grant arrives, so a switch. */
volatile __u32 sw_lan_v4 SEC(".data") = 0;

/* Keep the shared types in BTF for bpf2go. */
const struct flow_key *unused_flow_key __attribute__((unused));
const struct flow_entry *unused_flow_entry __attribute__((unused));
const struct carrier_slot *unused_carrier_slot __attribute__((unused));
const struct flow_bucket *unused_flow_bucket __attribute__((unused));
const struct flow_key4 *unused_flow_key4 __attribute__((unused));
const struct miss_rec *unused_miss_rec __attribute__((unused));
const enum action *unused_action __attribute__((unused));
const enum role *unused_role __attribute__((unused));
