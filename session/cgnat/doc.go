// Package cgnat is the reference model of the relay's carrier-grade NAT44
// for its own subscribers, and of its NAT64 for IPv6-only ones (nat64.go,
// xdp/bpf/nat64.h): the datapath's rules (xdp/bpf/cgnat.h) written
// as plain Go on byte slices, the spec the XDP programs are tested
// against (xdp/cgnat_test.go: same verdict, reason, bytes and state for
// every packet).
//
// Sub is the subscriber interface (relay_sub): a subscriber's packet
// takes its endpoint-independent mapping, or makes one from a port of
// one of its blocks, and goes out with the mapping's public address and
// port, or to another subscriber's mapping (hairpin). Ext is the
// Internet side (relay_ext): a packet to a pool address and block port
// goes to its mapping's subscriber if the filter lets it; anything else
// is the carriers' (session/xlat). ICMP errors are rewritten with their
// embedded packet (RFC 5508).
//
// State is what the datapath's maps hold: subscribers and the blocks the
// agent granted them, the ports taken in each block, the mappings both
// ways and the filters' permissions. The model has no clock: timeouts
// and the rate bound on refusals are the agent's and the datapath's.
package cgnat
