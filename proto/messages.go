package proto

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session"
)

// Message codes of version 1. Codes below 0x80 are critical: a reader that
// does not know one must end the connection (CodeUnsupportedType). Codes
// from 0x80 up are advisory: a reader that does not know one skips it.
const (
	TypeHello        Type = 0x01 // edge → relay: first message of a session
	TypeWelcome      Type = 0x02 // relay → edge: the session's grant
	TypeFlowOpen     Type = 0x10 // edge → relay: map an outbound flow (PCP PEER)
	TypeFlowGrant    Type = 0x11 // relay → edge: answer to FlowOpen
	TypeFlowOffer    Type = 0x12 // relay → edge: an inbound flow arrived
	TypeOfferReply   Type = 0x13 // edge → relay: accept or refuse an offer
	TypeCarrierBound Type = 0x14 // relay → edge: carrier bound or re-bound (C learned)
	TypeFlowClose    Type = 0x15 // either way: flow closed or expired
	TypeCarrierMoved Type = 0x16 // relay → edge: a bound carrier's packets come from another CGNAT port
	TypeReplay       Type = 0x20 // edge → relay: a batch of the edge's flow table
	TypeReplayDone   Type = 0x21 // relay → edge: the replay was applied
	TypePing         Type = 0x30 // either way: keepalive with counters
	TypePong         Type = 0x31 // answer to Ping, with the answerer's counters
	TypeGoodbye      Type = 0x3f // either way: graceful shutdown, or the reason of a refusal
	TypeICMPError    Type = 0x80 // relay → edge: an ICMPv6 error from a router beyond the relay (advisory)
)

// Capability bits of Hello and Welcome. The relay grants the intersection
// of what the edge offers and what it supports; a feature is used only if
// its bit is in Welcome.Capabilities.
const (
	CapIPv4Public   Capabilities = 1 << iota // a public IPv4 address or A+P port set for the site
	CapTCPOffer                              // inbound TCP offers carry the remote's SYN header
	CapUDPCarrier                            // non-native protocols ride a UDP carrier
	CapCounters                              // the relay's Pongs carry its counters
	CapEdgeChoosesR                          // Welcome.CarrierRanges are reserved for the session: the edge picks R itself
	CapRebind                                // the relay sends CarrierMoved; the edge answers with a token keepalive
)

// Capabilities is a bit set of optional features.
type Capabilities uint64

// Version is the minor version of protocol 2 that this package speaks.
// The major version is the ALPN token (ALPN); a minor version may only
// append fields to message bodies and add message types.
const Version uint8 = 0

// ALPN is the TLS application protocol of version 2. Version 1 bound a
// UDP carrier by a hash of the flow's first payload, which a host behind
// the same CGNAT address could predict; version 2 binds it by a proof
// carrying a secret (BindToken). The fields are the same but their
// meaning is not, so the two do not mix: an edge or relay of version 1
// fails the TLS handshake (no common application protocol) instead of
// opening flows whose carriers never bind.
const ALPN = "unmap/2"

// PortRange is an inclusive range of ports; the zero value means none.
type PortRange struct{ First, Last uint16 }

// Hello opens a session. The site identity is the one in the edge's
// certificate; Site repeats it so a misconfigured edge gets a clear
// CodeSiteMismatch rather than a grant for another site.
type Hello struct {
	Version      uint8        // highest minor version the edge speaks
	Capabilities Capabilities // what the edge supports
	Site         string       // the edge's configured site id (1..63 bytes)
	Previous     uint64       // session id of the edge's previous session, 0 if none
	EdgeAddr     netip.Addr   // the edge's WAN IPv4 (the carriers' source), if known
	WantPrefix   netip.Prefix // a prefix the edge asks for; zero: whatever the relay grants
	WantIPv4     netip.Addr   // a public IPv4 the edge asks for; zero: whatever the relay grants
}

// Timers are the relay's timer values for the session, in the units the
// wire carries them (Welcome).
type Timers struct {
	KeepaliveMS        uint32 // control channel keepalive the relay expects
	CarrierKeepaliveMS uint32 // how often the edge refreshes idle carriers through the CGNAT
	UDPSec             uint32 // idle timeouts of flows (RFC 4787, 5382, 5508)
	TCPEstablishedSec  uint32
	TCPTransitorySec   uint32
	ICMPSec            uint32
}

// CarrierRange is a range of relay carrier ports R for one protocol.
type CarrierRange struct {
	Proto session.Proto
	Ports PortRange
}

// Welcome grants a session: what the site may use, where carriers go, and
// the timers. A zero Prefix or PublicIPv4 means not granted.
type Welcome struct {
	Version       uint8        // minor version in use: min of both ends
	Capabilities  Capabilities // granted capabilities
	SessionID     uint64       // nonzero; the edge sends it back as Hello.Previous
	Prefix        netip.Prefix // delegated IPv6 prefix
	PublicIPv4    netip.Addr   // the site's public IPv4 on the relay
	PublicPorts   PortRange    // A+P port set of PublicIPv4 (RFC 6346); zero: the whole address
	Timers        Timers
	RelayAddrs    []netip.Addr   // relay addresses carriers go to (at most MaxRelayAddrs)
	CarrierRanges []CarrierRange // relay carrier port ranges R (at most MaxCarrierRanges); with CapEdgeChoosesR reserved for this session
}

// BindToken is what binds a carrier at the relay: a value a NAT does not
// rewrite that only the edge knows. For TCP it is the ISN of the carrier's
// SYN (low 32 bits); for a UDP carrier it is a secret the edge draws at
// random for the flow and proves on the carrier with a token keepalive
// (its opener, for an inbound flow).
type BindToken uint64

// FlowOpen asks the relay to map an outbound flow onto a carrier from the
// edge's port E, like a PCP PEER request. ID matches the FlowGrant.
//
// With CapEdgeChoosesR the edge picks the carrier's relay end itself from
// the session's reserved ranges and sends the flow's first packet at once,
// without waiting for the grant (no added round trip); the relay holds a
// carrier packet that beats its FlowOpen. Without it Relay is zero, the
// relay chooses R, and the edge holds the first packet until the grant.
type FlowOpen struct {
	ID           uint32
	Flags        FlowFlags
	Flow         session.Flow
	CarrierProto session.Proto  // TCP, UDP or ICMP; UDP for a UDP carrier
	EdgePort     uint16         // carrier source port E (ICMP: echo identifier)
	Relay        netip.AddrPort // R chosen by the edge (CapEdgeChoosesR); zero: the relay chooses
	LifetimeSec  uint32         // requested lifetime, as PCP; the grant may shorten it
	Token        BindToken
}

// FlowFlags qualify a FlowOpen.
type FlowFlags uint8

// FlagHeld says the edge holds the flow's first packet until the grant.
const FlagHeld FlowFlags = 1 << 0

// FlowGrant answers a FlowOpen. On CodeOK, Relay is the carrier's relay
// address and port R; otherwise Relay is zero and Result says why.
type FlowGrant struct {
	ID          uint32
	Result      Code
	Relay       netip.AddrPort
	LifetimeSec uint32
}

// FlowOffer tells the edge that an inbound flow arrived for the site.
// For TCP (with CapTCPOffer) SYN is the remote's TCP header with options,
// 20 to 60 bytes, which the edge replays to the LAN host.
type FlowOffer struct {
	ID           uint32
	Flow         session.Flow
	CarrierProto session.Proto
	Relay        netip.AddrPort // relay carrier address and port R
	LifetimeSec  uint32
	SYN          []byte
}

// OfferReply accepts (CodeOK) or refuses an offer. On accept, EdgePort is
// the carrier source port E and Token what binds the carrier.
type OfferReply struct {
	ID       uint32
	Result   Code
	EdgePort uint16
	Token    BindToken
}

// CarrierBound tells the edge the relay has bound a flow's carrier and
// how the CGNAT's public side looks (C). Generation counts re-bindings:
// 0 is the first binding, more means the CGNAT changed the port.
type CarrierBound struct {
	Flow       session.Flow
	Public     netip.AddrPort
	Generation uint16
}

// CarrierMoved tells the edge that packets of a flow's bound UDP carrier
// arrive from Public, another port of the same CGNAT address: the CGNAT
// may have rebound the carrier, or another host behind it is trying to
// take it. The edge answers with a token keepalive on the carrier (the
// keepalive payload followed by the carrier's bind token); the relay
// re-binds the carrier to the port that keepalive comes from, and tells
// the edge with CarrierBound (Generation+1).
type CarrierMoved struct {
	Flow   session.Flow
	Public netip.AddrPort
}

// FlowClose ends a flow at the other end. Reason is CodeClosed, CodeExpired
// or the code of a refusal. Closing an unknown flow is not an error.
type FlowClose struct {
	Flow   session.Flow
	Reason Code
}

// ReplayEntry is one flow of the edge's table, with its carrier as the
// edge knows it.
type ReplayEntry struct {
	Flow         session.Flow
	CarrierProto session.Proto
	EdgePort     uint16
	Relay        netip.AddrPort
	Public       netip.AddrPort // zero if never bound
	LifetimeSec  uint32         // remaining lifetime
	Token        BindToken
}

// Replay carries up to MaxReplayEntries flows of the edge's table after a
// reconnect. The batch with Last set ends the replay; the relay answers
// ReplayDone, after sending a FlowClose for each entry it refused.
type Replay struct {
	Last    bool
	Entries []ReplayEntry
}

// ReplayDone ends a replay.
type ReplayDone struct {
	Accepted, Refused uint32
}

// Counter is one named value in a Ping or Pong.
type Counter struct {
	ID    CounterID
	Value uint64
}

// CounterID names a counter; a reader ignores IDs it does not know.
type CounterID uint16

// Counters of version 1.
const (
	CounterFlows         CounterID = 1 // flows in the sender's table
	CounterFlowOpens     CounterID = 2 // flows opened since the session began
	CounterFlowCloses    CounterID = 3
	CounterRefusals      CounterID = 4
	CounterCarrierPktIn  CounterID = 5 // carrier packets received by the datapath
	CounterCarrierPktOut CounterID = 6
	CounterDrops         CounterID = 7 // packets the datapath dropped, any reason
)

// Ping is an application keepalive: QUIC keeps the path alive, Ping lets
// each end see the other is responsive and exchange counters.
type Ping struct {
	Seq      uint32
	Counters []Counter // at most MaxCounters
}

// Pong answers a Ping with the same Seq.
type Pong struct {
	Seq      uint32
	Counters []Counter
}

// Goodbye ends a session: CodeShutdown for a graceful stop, or the code of
// the refusal. RetryMS asks the peer to wait before reconnecting.
type Goodbye struct {
	Code    Code
	RetryMS uint32
	Reason  string // at most 255 bytes of UTF-8 for logs
}

// ICMPError carries an ICMPv6 error that a router beyond the relay sent
// about one of the site's flows (a hop of traceroute6, a Packet Too Big),
// whole and untranslated: the site's IPv6 addresses are not rewritten, so
// the edge gives it to the LAN host as it is. Packet is the IPv6 packet,
// header included, MinICMPErrorLen to MaxICMPErrorLen bytes.
type ICMPError struct {
	Packet []byte
}

// Limits of lists and strings, so every decoder is bounded.
const (
	MaxSiteLen       = 63
	MaxRelayAddrs    = 16
	MaxCarrierRanges = 16
	MaxReplayEntries = 512
	MaxCounters      = 32
	MaxReasonLen     = 255
	MinSYNLen        = 20
	MaxSYNLen        = 60
)
