package xlat

import "fmt"

// Reason says why a packet left the fast path: every pass and drop the
// datapath decides carries one. The numbers are those of enum reason in
// xdp/bpf/reasons.h (a test in package xdp checks both lists agree).
type Reason uint32

// Reasons, in the C enum's order.
const (
	ReasonNone            Reason = iota // translated and forwarded: counted per flow
	ReasonPassNotIP                     // not IPv4/IPv6, or a runt frame
	ReasonPassLocal                     // for the router itself
	ReasonPassNotOurs                   // no entry, outside unmap's ranges
	ReasonPassFragment                  // IPv4 fragment or IPv6 fragment header
	ReasonPassIPOptions                 // IPv4 options
	ReasonPassIPv6Ext                   // IPv6 extension headers
	ReasonPassTTL                       // TTL/hop limit <= 1: the stack answers
	ReasonPassICMPOther                 // ICMP other than echo: left to the stack
	ReasonPassNoNeigh                   // translated; no neighbour yet
	ReasonPassFIB                       // translated; FIB gave no XDP route
	ReasonDropTruncL3                   // frame shorter than its IP header
	ReasonDropBadIP                     // wrong IP version or IHL
	ReasonDropBadLen                    // IP or UDP length disagrees
	ReasonDropBadCsum                   // IPv4 header checksum wrong
	ReasonDropTruncL4                   // L4 header does not fit
	ReasonDropUDPZeroCsum               // UDP without checksum where one is needed
	ReasonDropBadEntry                  // entry's action does not fit the packet
	ReasonDropHelper                    // a BPF helper failed
	ReasonMiss                          // ours, no entry: to the agent
	ReasonDropMissFull                  // miss ring full
	ReasonKeepalive                     // an edge's carrier keepalive: consumed
	ReasonICMPErrToAgent                // relay: ICMPv6 error from a router beyond it: to the agent, for the edge
	ReasonTTLToAgent                    // TTL ran out here (relay: a carrier; edge LAN: IPv6): to the agent, which answers time exceeded
	ReasonDropMissRate                  // a miss over its source's rate (the datapath's, not modelled: the model has no clock)
	NumReasons                          // number of reasons (not a reason)
)

var reasonNames = [NumReasons]string{
	"none", "pass-not-ip", "pass-local", "pass-not-ours", "pass-fragment",
	"pass-ip-options", "pass-ipv6-ext", "pass-ttl", "pass-icmp-other",
	"pass-no-neigh", "pass-fib", "drop-trunc-l3", "drop-bad-ip",
	"drop-bad-len", "drop-bad-csum", "drop-trunc-l4", "drop-udp-zero-csum",
	"drop-bad-entry", "drop-helper", "miss", "drop-miss-full", "keepalive",
	"icmp-err-to-agent", "ttl-to-agent", "drop-miss-rate",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", uint32(r))
}

// ToAgent reports whether the datapath hands packets of reason r to the
// agent through the misses ring (Result.Miss holds their bytes).
func (r Reason) ToAgent() bool {
	return r == ReasonMiss || r == ReasonICMPErrToAgent || r == ReasonTTLToAgent
}
