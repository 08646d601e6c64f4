package xlat

import "fmt"

// Reason says why a packet left the fast path: every pass and drop the
// datapath decides carries one. The numbers are those of enum reason in
// xdp/bpf/reasons.h (a test in package xdp checks both lists agree).
type Reason uint32

// Reasons, in the C enum's order (the counters' index: new ones are
// appended). Each one's verdict is written in reasonTable, as the C
// writes each one's action beside it, never taken from the order.
const (
	ReasonNone                   Reason = iota // translated and forwarded: counted per flow
	ReasonPassNotIP                            // not IPv4/IPv6, or a runt frame
	ReasonPassLocal                            // for the router itself
	ReasonPassNotOurs                          // no entry, outside unmap's ranges
	ReasonPassFragment                         // IPv4 fragment or IPv6 fragment header
	ReasonPassIPOptions                        // IPv4 options
	ReasonPassIPv6Ext                          // IPv6 extension headers
	ReasonPassTTL                              // TTL/hop limit <= 1: the stack answers
	ReasonPassICMPOther                        // ICMP other than echo: left to the stack
	ReasonPassNoNeigh                          // translated; no neighbour yet
	ReasonPassFIB                              // translated; FIB gave no XDP route
	ReasonDropTruncL3                          // frame shorter than its IP header
	ReasonDropBadIP                            // wrong IP version or IHL
	ReasonDropBadLen                           // IP or UDP length disagrees
	ReasonDropBadCsum                          // IPv4 header checksum wrong
	ReasonDropTruncL4                          // L4 header does not fit
	ReasonDropUDPZeroCsum                      // UDP without checksum where one is needed
	ReasonDropBadEntry                         // entry's action does not fit the packet
	ReasonDropHelper                           // a BPF helper failed
	ReasonMiss                                 // ours, no entry: to the agent
	ReasonDropMissFull                         // miss ring full
	ReasonKeepalive                            // an edge's carrier keepalive: consumed
	ReasonICMPErrToAgent                       // relay: ICMPv6 error from a router beyond it: to the agent, for the edge
	ReasonTTLToAgent                           // TTL ran out here (relay: a carrier; edge LAN: IPv6): to the agent, which answers time exceeded
	ReasonDropMissRate                         // a miss over its source's rate (the datapath's, not modelled: the model has no clock)
	ReasonDropMartianUnspecified               // source :: or 0.0.0.0/8 (martian.go)
	ReasonDropMartianLoopback                  // source ::1 or 127.0.0.0/8
	ReasonDropMartianMulticast                 // source ff00::/8 or 224.0.0.0/4
	ReasonDropMartianLinkLocal                 // source fe80::/10 or 169.254.0.0/16
	ReasonDropMartianMapped                    // IPv6 source with an IPv4 inside: ::ffff:0:0/96, ::/96
	ReasonDropMartianReserved                  // source 240.0.0.0/4 (255.255.255.255 too)
	ReasonDropMartianOwn                       // source is this end's carrier address (relay: or one of its own)
	ReasonDropMartianSite                      // relay: source inside a site's prefix or public IPv4
	ReasonDropMartianDst                       // destination no wire may carry
	ReasonCGNATNoBlock                         // subscriber: new mapping, no free port in its blocks: to the agent (session/cgnat)
	ReasonCGNATRefused                         // subscriber: new mapping, quota or pool spent: answered ICMP admin-prohibited (XDP_TX)
	ReasonDropCGNATRefusedRate                 // the same over the answers' rate bound (the datapath's, not modelled: no clock)
	ReasonDropCGNATSource                      // subscriber interface: source outside the inside prefix
	ReasonDropCGNATProto                       // subscriber: not TCP, UDP, echo request or an error the CGNAT rewrites
	ReasonDropCGNATFragment                    // IPv4 fragment from a subscriber or to the pool
	ReasonDropCGNATOptions                     // IPv4 options from a subscriber
	ReasonDropCGNATNotSYN                      // subscriber: TCP without a mapping, not a SYN
	ReasonDropCGNATNoMapping                   // to a pool port no mapping holds; from a subscriber: echo reply or error without one
	ReasonDropCGNATFiltered                    // inbound, refused by the address(-and-port)-dependent filter
	ReasonDropNAT64Source                      // subscriber: IPv6 to the NAT64 prefix from outside the inside IPv6 prefix
	ReasonDropNAT64Dst                         // subscriber: NAT64 to an IPv4 it does not reach (pool, inside, gateway; non-global under the well-known prefix)
	ReasonDropNAT64Ext                         // subscriber: IPv6 with extension headers to the NAT64 prefix
	ReasonDropNAT64Hairpin                     // subscriber: NAT64 to a pool address, or NAT44 hairpin to a NAT64 mapping
	ReasonNAT64TooBig                          // inbound to a NAT64 mapping, too big for the subscriber link once IPv6, DF set: answered fragmentation needed (XDP_TX)
	ReasonDropNAT64TooBig                      // the same without DF (not fragmented), or an ICMP error that would outgrow it
	ReasonDropBadTCPOffset                     // TCP data offset under 5 words, or a header past the IP packet
	ReasonDropCGNATBusy                        // subscriber: new mapping, its table bucket's lock held by another CPU past the tries (datapath only: the model has one CPU)
	NumReasons                                 // number of reasons (not a reason)
)

// reasonTable names each reason and says what the datapath does with a
// packet it leaves for it: the C's UNMAP_REASONS (xdp/bpf/reasons.h),
// checked entry by entry against its BTF by TestReasonsMatchC. A reason
// missing here has no name and fails that test.
var reasonTable = [NumReasons]struct {
	name    string
	verdict Verdict
}{
	ReasonNone:                   {"none", Pass},
	ReasonPassNotIP:              {"pass-not-ip", Pass},
	ReasonPassLocal:              {"pass-local", Pass},
	ReasonPassNotOurs:            {"pass-not-ours", Pass},
	ReasonPassFragment:           {"pass-fragment", Pass},
	ReasonPassIPOptions:          {"pass-ip-options", Pass},
	ReasonPassIPv6Ext:            {"pass-ipv6-ext", Pass},
	ReasonPassTTL:                {"pass-ttl", Pass},
	ReasonPassICMPOther:          {"pass-icmp-other", Pass},
	ReasonPassNoNeigh:            {"pass-no-neigh", Pass},
	ReasonPassFIB:                {"pass-fib", Pass},
	ReasonDropTruncL3:            {"drop-trunc-l3", Drop},
	ReasonDropBadIP:              {"drop-bad-ip", Drop},
	ReasonDropBadLen:             {"drop-bad-len", Drop},
	ReasonDropBadCsum:            {"drop-bad-csum", Drop},
	ReasonDropTruncL4:            {"drop-trunc-l4", Drop},
	ReasonDropUDPZeroCsum:        {"drop-udp-zero-csum", Drop},
	ReasonDropBadEntry:           {"drop-bad-entry", Drop},
	ReasonDropHelper:             {"drop-helper", Drop},
	ReasonMiss:                   {"miss", Drop},
	ReasonDropMissFull:           {"drop-miss-full", Drop},
	ReasonKeepalive:              {"keepalive", Drop},
	ReasonICMPErrToAgent:         {"icmp-err-to-agent", Drop},
	ReasonTTLToAgent:             {"ttl-to-agent", Drop},
	ReasonDropMissRate:           {"drop-miss-rate", Drop},
	ReasonDropMartianUnspecified: {"drop-martian-unspecified", Drop},
	ReasonDropMartianLoopback:    {"drop-martian-loopback", Drop},
	ReasonDropMartianMulticast:   {"drop-martian-multicast", Drop},
	ReasonDropMartianLinkLocal:   {"drop-martian-link-local", Drop},
	ReasonDropMartianMapped:      {"drop-martian-mapped", Drop},
	ReasonDropMartianReserved:    {"drop-martian-reserved", Drop},
	ReasonDropMartianOwn:         {"drop-martian-own", Drop},
	ReasonDropMartianSite:        {"drop-martian-site", Drop},
	ReasonDropMartianDst:         {"drop-martian-dst", Drop},
	ReasonCGNATNoBlock:           {"cgnat-no-block", Drop},
	ReasonCGNATRefused:           {"cgnat-refused", TX},
	ReasonDropCGNATRefusedRate:   {"drop-cgnat-refused-rate", Drop},
	ReasonDropCGNATSource:        {"drop-cgnat-source", Drop},
	ReasonDropCGNATProto:         {"drop-cgnat-proto", Drop},
	ReasonDropCGNATFragment:      {"drop-cgnat-fragment", Drop},
	ReasonDropCGNATOptions:       {"drop-cgnat-options", Drop},
	ReasonDropCGNATNotSYN:        {"drop-cgnat-not-syn", Drop},
	ReasonDropCGNATNoMapping:     {"drop-cgnat-no-mapping", Drop},
	ReasonDropCGNATFiltered:      {"drop-cgnat-filtered", Drop},
	ReasonDropNAT64Source:        {"drop-nat64-source", Drop},
	ReasonDropNAT64Dst:           {"drop-nat64-dst", Drop},
	ReasonDropNAT64Ext:           {"drop-nat64-ext", Drop},
	ReasonDropNAT64Hairpin:       {"drop-nat64-hairpin", Drop},
	ReasonNAT64TooBig:            {"nat64-too-big", TX},
	ReasonDropNAT64TooBig:        {"drop-nat64-too-big", Drop},
	ReasonDropBadTCPOffset:       {"drop-bad-tcp-offset", Drop},
	ReasonDropCGNATBusy:          {"drop-cgnat-busy", Drop},
}

func (r Reason) String() string {
	if r < NumReasons && reasonTable[r].name != "" {
		return reasonTable[r].name
	}
	return fmt.Sprintf("reason-%d", uint32(r))
}

// Verdict is what the datapath does with a packet it leaves untouched
// for reason r (ReasonNone's is that of an untranslated pass; a
// translated packet's verdict is forwarding's). Drop also covers packets
// consumed or handed to the agent: they go no further.
func (r Reason) Verdict() Verdict {
	if r < NumReasons && reasonTable[r].name != "" {
		return reasonTable[r].verdict
	}
	return Pass // as the C's action mask has no bit for it
}

// ToAgent reports whether the datapath hands packets of reason r to the
// agent through the misses ring (Result.Miss holds their bytes).
func (r Reason) ToAgent() bool {
	return r == ReasonMiss || r == ReasonICMPErrToAgent || r == ReasonTTLToAgent || r == ReasonCGNATNoBlock
}
