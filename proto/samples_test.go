package proto

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session"
)

var (
	flow6 = session.Flow{
		Proto:  session.TCP,
		Site:   netip.MustParseAddrPort("[2001:db8:1:2::10]:40123"),
		Remote: netip.MustParseAddrPort("[2001:db8:ffff::443]:443"),
	}
	flow4 = session.Flow{
		Proto:  session.UDP,
		Site:   netip.MustParseAddrPort("192.0.2.10:5353"),
		Remote: netip.MustParseAddrPort("203.0.113.9:53"),
	}
	relayR  = netip.MustParseAddrPort("198.51.100.6:20001")
	publicC = netip.MustParseAddrPort("100.64.7.1:33333")
)

// synHeader is a TCP SYN header with MSS, SACK-permitted, timestamps and
// window scale options: 40 bytes, data offset 10.
func synHeader() []byte {
	h := []byte{
		0x01, 0xbb, 0x9c, 0x40, // ports
		0x11, 0x22, 0x33, 0x44, // seq
		0, 0, 0, 0, // ack
		0xa0, 0x02, 0xff, 0xff, // offset 10, SYN, window
		0, 0, 0, 0, // checksum, urgent
		2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
	}
	return h
}

// samples returns at least one fully populated instance of every message
// type, plus the edge cases of each (empty lists, IPv4 flows, refusals).
func samples() []Message {
	entries := make([]ReplayEntry, 3)
	for i := range entries {
		entries[i] = ReplayEntry{Flow: flow6, CarrierProto: session.TCP, EdgePort: uint16(61000 + i), Relay: relayR, Public: publicC, LifetimeSec: 7440, Token: BindToken(0x11223344 + i)}
	}
	entries[1].Flow = flow4
	entries[1].CarrierProto = session.UDP
	entries[2].Public = netip.AddrPort{}
	return []Message{
		&Hello{Version: Version, Capabilities: CapIPv4Public | CapTCPOffer, Site: "home-1", Previous: 77,
			EdgeAddr: netip.MustParseAddr("100.64.0.2"), WantPrefix: netip.MustParsePrefix("2001:db8:1::/48"), WantIPv4: netip.MustParseAddr("198.51.100.20")},
		&Hello{Site: "a"},
		&Welcome{Version: Version, Capabilities: CapCounters, SessionID: 0xdeadbeef,
			Prefix: netip.MustParsePrefix("2001:db8:1::/48"), PublicIPv4: netip.MustParseAddr("198.51.100.20"),
			PublicPorts:   PortRange{First: 1024, Last: 2047},
			Timers:        Timers{KeepaliveMS: 15000, CarrierKeepaliveMS: 20000, UDPSec: 300, TCPEstablishedSec: 7440, TCPTransitorySec: 240, ICMPSec: 60},
			RelayAddrs:    []netip.Addr{netip.MustParseAddr("198.51.100.6"), netip.MustParseAddr("198.51.100.7")},
			CarrierRanges: []CarrierRange{{Proto: session.TCP, Ports: PortRange{20000, 29999}}, {Proto: session.UDP, Ports: PortRange{20000, 39999}}}},
		&Welcome{SessionID: 1},
		&FlowOpen{ID: 1, Flags: FlagHeld, Flow: flow6, CarrierProto: session.TCP, EdgePort: 61000, LifetimeSec: 7440, Token: 0x11223344},
		&FlowOpen{ID: 3, Flow: flow6, CarrierProto: session.TCP, EdgePort: 61003, Relay: relayR, LifetimeSec: 7440, Token: 7},
		&FlowOpen{ID: 0xffffffff, Flow: flow4, CarrierProto: session.UDP, EdgePort: 61001, LifetimeSec: 300, Token: 1 << 63},
		&FlowGrant{ID: 1, Result: CodeOK, Relay: relayR, LifetimeSec: 7440},
		&FlowGrant{ID: 2, Result: CodeQuotaExceeded},
		&FlowOffer{ID: 9, Flow: flow6, CarrierProto: session.TCP, Relay: relayR, LifetimeSec: 240, SYN: synHeader()},
		&FlowOffer{ID: 10, Flow: flow4, CarrierProto: session.UDP, Relay: relayR, LifetimeSec: 300},
		&OfferReply{ID: 9, Result: CodeOK, EdgePort: 61002, Token: 0x55667788},
		&OfferReply{ID: 10, Result: CodeRefused},
		&CarrierBound{Flow: flow6, Public: publicC, Generation: 3},
		&FlowClose{Flow: flow4, Reason: CodeExpired},
		&Replay{Last: true, Entries: entries},
		&Replay{},
		&ReplayDone{Accepted: 1000, Refused: 2},
		&Ping{Seq: 5, Counters: []Counter{{CounterFlows, 12}, {CounterDrops, 1 << 40}, {999, 1}}},
		&Ping{},
		&Pong{Seq: 5, Counters: []Counter{{CounterFlowOpens, 7}}},
		&Goodbye{Code: CodeShutdown, RetryMS: 2000, Reason: "relay restarting"},
		&Goodbye{Code: CodeUnknownSite},
		&ICMPError{Packet: icmpErrorPacket()},
		&CarrierMoved{Flow: flow6, Public: publicC},
	}
}

// icmpErrorPacket is a router's time exceeded (2001:db8:1::1) about a UDP
// probe from 2001:db8:5::2 to 2001:db8:6::2: IPv6, ICMPv6, the probe's
// IPv6 and UDP headers.
func icmpErrorPacket() []byte {
	src := netip.MustParseAddr("2001:db8:1::1").As16()
	host := netip.MustParseAddr("2001:db8:5::2").As16()
	far := netip.MustParseAddr("2001:db8:6::2").As16()
	p := []byte{0x60, 0, 0, 0, 0, 56, 58, 64}
	p = append(append(p, src[:]...), host[:]...)
	p = append(p, 3, 0, 0x12, 0x34, 0, 0, 0, 0) // time exceeded in transit
	p = append(p, 0x60, 0, 0, 0, 0, 8, 17, 1)
	p = append(append(p, host[:]...), far[:]...)
	return append(p, 0x9c, 0x40, 0x82, 0x9a, 0, 8, 0xab, 0xcd) // UDP 40000 -> 33434
}
