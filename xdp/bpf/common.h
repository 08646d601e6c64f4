/* common.h: the includes every unmap BPF header needs, and small macros.
 * Headers come from the system UAPI (linux/ and libbpf-dev's bpf/ headers) plus
 * the asm/ shims in include/, so no vmlinux.h and no network fetch. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Compile-time size checks for structs shared with Go. */
#define build_bug_on(cond) _Static_assert(!(cond), #cond)

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* Every map lookup of the datapath goes through map_lookup. Built with
 * -DUNMAP_COUNT_LOOKUPS (the test-only "lookups" object), it also counts
 * them in the global unmap_lookups, so a test can prove how many lookups
 * a packet took; the production object compiles it to the bare helper. */
#ifdef UNMAP_COUNT_LOOKUPS
__u64 unmap_lookups;
#define map_lookup(map, key) (unmap_lookups++, bpf_map_lookup_elem(map, key))
#else
#define map_lookup(map, key) bpf_map_lookup_elem(map, key)
#endif
