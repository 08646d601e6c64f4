/* config.h: what the agent sets and the program reads as plain globals:
 * load-time constants (cfg_*, .rodata, fixed for the program's life) and
 * run-time switches (sw_*, .data, written while it runs). */
#pragma once

#include "common.h"

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

/* The relay's CGNAT (cgnat.h). cfg_cg_subs = 0: no CGNAT (the edge,
 * a relay without subscribers). Addresses in network order unless said. */
volatile const __u32 cfg_cg_in_net;    /* inside prefix, host order */
volatile const __u32 cfg_cg_subs;      /* addresses in it: 1 << (32 - length) */
volatile const __u32 cfg_cg_gw;        /* the relay's address towards subscribers */
volatile const __u32 cfg_cg_pool;      /* first public address of the subscribers' pool, host order */
volatile const __u32 cfg_cg_pool_n;    /* its addresses */
volatile const __u32 cfg_cg_port_lo;   /* the blocks' first port on each of them */
volatile const __u32 cfg_cg_blk_bits;  /* log2(ports per block), 6..9 */
volatile const __u32 cfg_cg_nblk;      /* blocks per address */
volatile const __u32 cfg_cg_filter;    /* 0 endpoint-independent, 1 address-, 2 address-and-port-dependent */
volatile const __u32 cfg_cg_tab_bits;  /* log2(cg_table's buckets) */
volatile const __u32 cfg_cg_warn;      /* ports taken in a block that ask the agent for the next */
volatile const __u64 cfg_cg_refuse_ns; /* one admin-prohibited answer per this many ns (0: no bound) */
volatile const __u64 cfg_cg_refuse_depth_ns; /* the bound's burst, in ns */
/* NAT64 (nat64.h). cfg_cg6_subs = 0: none. */
volatile const __u64 cfg_cg6_net;      /* inside IPv6 prefix's first 64 bits, host order */
volatile const __u32 cfg_cg6_subs;     /* its /64s */
volatile const __u32 cfg_cg6_pfx[3];   /* the NAT64 /96, network order */
volatile const __u32 cfg_cg6_mtu;      /* the largest IPv6 packet NAT64 sends a subscriber */
/* The next-hop cache (nhcache.h): how long an entry lives, in jiffies
 * (~50 ms; the loader learns the jiffy from clock_getres). 0: no cache. */
volatile const __u64 cfg_nh_ttl;

/* Run-time switches, in the .data array map (a direct load, no lookup):
 * sw_fib = 0 passes translated packets to the stack instead of looking
 * up the FIB, the mode the differential tests compare bytes in. */
volatile __u32 sw_fib = 1;
/* sw_lan_v4 = 1 hands the edge LAN's IPv4 misses to the agent (the site
 * has a public IPv4 on the relay); 0 passes them to the stack, the
 * ordinary path. Set when the relay's grant arrives, so a switch. */
volatile __u32 sw_lan_v4 SEC(".data") = 0;
/* sw_cg_epoch: the CGNAT agent's sweep epoch, stamped on a mapping by
 * its outbound packets (struct cg_out). The agent derives it from the
 * clock, so a restarted agent goes on with the same numbers. */
volatile __u32 sw_cg_epoch SEC(".data") = 0;
/* sw_nh_gen: the next-hop cache's generation (nhcache.h). The agent
 * bumps it on every routing change of its namespace; an entry filled
 * under another value is stale. Starts at 1, so a zeroed slot never
 * matches. */
volatile __u32 sw_nh_gen SEC(".data") = 1;
