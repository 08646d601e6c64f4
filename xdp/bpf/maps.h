/* maps.h: the datapath's maps, each under a one-line comment saying what
 * it holds, the reasons for its kind after that line. The types they hold
 * are in types.h, the plain globals in config.h, the reason counters in
 * reasons.h. Pinned maps (xdp/pin.go: all but the miss ring and the miss
 * bound's two) keep their names, kinds and sizes across builds. */
#pragma once

#include "common.h"
#include "types.h"

/* The flow table: every key that is not a carrier of this end, by bucket.
 * The bucket is the one its seeded hash picks (lookup.h): an array lookup
 * the verifier inlines, and a compare of five words, where a kernel hash
 * costs a jhash, a bucket walk and a memcmp behind retpolines. Shared,
 * not per-CPU, and mmapable: the agent writes ways in place with ordered
 * stores (xdp/table.go), so publishing a key never rewrites the counters
 * of its neighbours. Sized at load time. */
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

/* IPv4 keys whose bucket or carrier slot holds other keys (lookup.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key4);
	__type(value, struct flow_entry);
} flows4 SEC(".maps");

/* Carrier keys by local port and protocol: one struct carrier_slot each.
 * Index (protocol plane: TCP 0, UDP 1, ICMP 2) x (range size) + (port -
 * cfg_port_lo): an array lookup the verifier inlines to an address
 * computation, where a hash costs a jhash of the 40-byte key and a
 * compare. Sized at load time to the carrier range. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct carrier_slot);
} carriers SEC(".maps");

/* The router's own addresses (IPv4 as ::ffff:a.b.c.d), read on a miss.
 * The edge LAN passes misses to them to the stack; the relay refuses
 * them as sources of what it hands to the agent (martian.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32[4]);
	__type(value, __u8);
} local_addrs SEC(".maps");

/* Sites' prefixes and public IPv4 (as ::ffff:a.b.c.d/128), read on a miss.
 * The relay hands misses to them to the agent and refuses them as
 * sources (martian.h); the edge LAN passes misses to them (the site's
 * other segments). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} site_prefixes SEC(".maps");

/* Missed packets handed to the agent (struct miss_rec), to hold and re-inject. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} misses SEC(".maps");

/* The miss bound's rate buckets: per source, when its bucket is full again.
 * The time is bpf_ktime_get_ns's. Shared by the CPUs, not per-CPU: RSS
 * spreads a source that varies its ports over every queue, and per-CPU
 * buckets would multiply its budget by the CPUs it reaches. A shared
 * bucket costs no cache-line bouncing: a refused packet only reads it,
 * and writes come at the configured rate. An LRU: a source pushed out
 * had a full bucket or was quiet, so forgetting it loses little, and a
 * flooding source keeps its own entry hot. Not pinned (xdp/pin.go):
 * fresh with each load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct miss_src);
	__type(value, __u64);
} miss_srcs SEC(".maps");

/* IPv4 sources whose carriers' first packets the miss bound lets through.
 * At the relay, the CGNAT public addresses its edges' sessions come
 * from, which every new flow of every site behind them crosses (miss.h).
 * Written by the agent; not pinned (xdp/pin.go). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} miss_exempt SEC(".maps");

/* Egress interfaces XDP_REDIRECT may use, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* The CGNAT's NAT44 mappings: subscriber address, port, protocol ->
 * public address and port, by bucket of four ways (struct cg_bucket),
 * the bucket a seeded hash of the key picks (cg_table.h). One cache
 * line a lookup: a kernel hash costs a bucket head and an element,
 * each in its own page of a table sized for the most mappings, and
 * with many mappings both miss the cache and the TLB (0.22-0.29x the
 * hash's time, BenchmarkCGNATMappingLookup). The datapath puts keys
 * in with the bucket's lock (cg_bmeta); the agent reads and ends them
 * through a shared memory mapping (xdp/cgtable.go). Sized at load time:
 * at most half full at the configured most mappings. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct cg_bucket);
} cg_table SEC(".maps");

/* cg_table's buckets' lock and spill count (CG_META_*), one word each:
 * apart from the ways, so a lookup that finds its key never reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} cg_bmeta SEC(".maps");

/* NAT44 mappings whose cg_table bucket was full: the spill, read only
 * for a bucket whose cg_bmeta counts keys here. A kernel hash, since
 * the datapath inserts into it. Sized at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct cg_key);
	__type(value, struct cg_out);
} cg_mappings SEC(".maps");

/* NAT64's outbound mappings (struct cg_key6 -> struct cg_out): as
 * cg_mappings, for IPv6-only subscribers; the inbound slots are shared
 * (one pool). One entry when there is no NAT64. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct cg_key6);
	__type(value, struct cg_out);
} cg_mappings6 SEC(".maps");

/* The interface ID (the last 8 bytes, as on the wire) of a NAT64
 * mapping's subscriber, beside its cg_slots slot (same index): cg_in has
 * room for the /64's index only. Written before the slot. One entry when
 * there is no NAT64. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cg_slots6 SEC(".maps");

/* The CGNAT's inbound slots: (protocol plane) x (pool ports) + (address
 * index) x (ports per address) + (port - first block port), one struct
 * cg_in each. An array: the pool is a known range, so an inbound packet
 * finds its mapping by arithmetic and an inlined lookup. Sized at load
 * time to the pool. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cg_in);
} cg_slots SEC(".maps");

/* The pool's port blocks (struct cg_block), by address index x blocks
 * per address + block number. Written by the agent when it grants a
 * block; ports taken in them by the datapath with atomics, and given
 * back by the agent with atomics too, through a shared memory mapping
 * (xdp/cgnat.go): a write of the whole block by the bpf syscall would
 * wipe a bit another CPU set meanwhile, and give its port twice. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct cg_block);
} cg_blocks SEC(".maps");

/* Subscribers by index: inside address - inside prefix, then (NAT64)
 * the inside IPv6 prefix's /64s after them: their blocks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cg_sub);
} cg_subs SEC(".maps");

/* Permissions of the address(-and-port)-dependent filters; empty with
 * endpoint-independent filtering (the default). The value is the inside
 * end the permission was made for (an inbound slot's low 48 bits:
 * address, or NAT64 subscriber index, and port): one that no longer
 * holds the mapping's public port does not pass (cgnat.h). Least
 * recently used first out when full: nobody deletes a permission when
 * its mapping ends, and a hash that filled up would take no new one. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct cg_perm);
	__type(value, __u64);
} cg_perms SEC(".maps");

/* Block events for the agent (struct cg_event): a block nearly full. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} cg_events SEC(".maps");

/* When the bound on the CGNAT's admin-prohibited answers is full again
 * (bpf_ktime_get_ns; GCRA, as miss_srcs). One for the relay. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cg_refuse_at SEC(".maps");
