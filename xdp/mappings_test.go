package xdp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// nat rewrites an IPv4 carrier's source (outbound through the CGNAT) or
// destination (inbound) as a NAT would, and recomputes its checksums with
// gopacket.
func nat(t *testing.T, frame []byte, src, dst netip.AddrPort) []byte {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if eth == nil || ip == nil {
		t.Fatalf("not an IPv4 frame: %x", frame)
	}
	ls := []gopacket.SerializableLayer{eth, ip}
	set := func(a netip.AddrPort, addr *net.IP, port func(uint16)) {
		if a.IsValid() {
			*addr = a.Addr().AsSlice()
			port(a.Port())
		}
	}
	switch l := p.TransportLayer().(type) {
	case *layers.TCP:
		set(src, &ip.SrcIP, func(v uint16) { l.SrcPort = layers.TCPPort(v) })
		set(dst, &ip.DstIP, func(v uint16) { l.DstPort = layers.TCPPort(v) })
		_ = l.SetNetworkLayerForChecksum(ip)
		ls = append(ls, l, gopacket.Payload(l.Payload))
	case *layers.UDP:
		set(src, &ip.SrcIP, func(v uint16) { l.SrcPort = layers.UDPPort(v) })
		set(dst, &ip.DstIP, func(v uint16) { l.DstPort = layers.UDPPort(v) })
		_ = l.SetNetworkLayerForChecksum(ip)
		ls = append(ls, l, gopacket.Payload(l.Payload))
	default:
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if icmp == nil {
			t.Fatalf("no L4 in %x", frame)
		}
		set(src, &ip.SrcIP, func(v uint16) { icmp.Id = v })
		set(dst, &ip.DstIP, func(v uint16) { icmp.Id = v })
		ls = append(ls, icmp, gopacket.Payload(icmp.Payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tablesOf(ms ...Mapping) *xlattest.Tables {
	t := &xlattest.Tables{Flows: map[xlat.Key]xlat.Entry{}}
	for _, m := range ms {
		t.Flows[m.Key] = m.Entry
	}
	return t
}

// TestPairsEndToEnd runs a flow's packets through the reference model of
// the edge, a CGNAT and the relay, both ways, with the entries EdgePair
// and RelayPair make: what leaves the relay is what the site host sent
// (but for two hops of hop limit), and the same the other way.
func TestPairsEndToEnd(t *testing.T) {
	site, remote := netip.MustParseAddr("2001:db8:5::2"), netip.MustParseAddr("2001:db8:6::2")
	edgeAddr, relayAddr := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("198.51.100.6")
	for _, tc := range []struct {
		name         string
		flowP, carrP session.Proto
		sport, dport uint16
		payload      []byte
	}{
		{"tcp", session.TCP, session.TCP, 40000, 443, []byte("GET /")},
		{"udp", session.UDP, session.UDP, 5353, 53, []byte("query")},
		{"echo", session.ICMPv6, session.ICMP, 77, 0, []byte("ping")},
		{"esp on a udp carrier", 50, session.UDP, 0, 0, bytes.Repeat([]byte{0xab}, 16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := session.Flow{Proto: tc.flowP, Site: netip.AddrPortFrom(site, tc.sport), Remote: netip.AddrPortFrom(remote, tc.dport)}
			c := session.Carrier{Proto: tc.carrP, Edge: netip.AddrPortFrom(edgeAddr, 61000),
				Relay: netip.AddrPortFrom(relayAddr, 20001), Public: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), 1234)}
			eo, eb, err := EdgePair(f, c)
			if err != nil {
				t.Fatal(err)
			}
			ro, rb, err := RelayPair(f, c)
			if err != nil {
				t.Fatal(err)
			}
			edgeCfg := xlat.Config{CarrierAddr: edgeAddr, PortLo: 61000, PortHi: 61999}
			relayCfg := xlat.Config{CarrierAddr: relayAddr, PortLo: 20000, PortHi: 29999}
			edge, relay := tablesOf(eo, eb), tablesOf(ro, rb)

			// Out: site -> edge -> CGN -> relay -> remote.
			in := xlattest.Build(xlattest.Spec{Src: site, Dst: remote, Proto: uint8(tc.flowP), SPort: tc.sport, DPort: tc.dport, Payload: tc.payload, TTL: 64})
			r := xlat.Process(xlat.RoleEdgeLAN, &edgeCfg, edge, nil, append([]byte(nil), in...))
			if !r.Hit {
				t.Fatalf("edge LAN: %v", r.Reason)
			}
			r = xlat.Process(xlat.RoleRelayExt, &relayCfg, relay, nil, nat(t, r.Out, c.Public, netip.AddrPort{}))
			if !r.Hit {
				t.Fatalf("relay: %v", r.Reason)
			}
			want := xlattest.Build(xlattest.Spec{Src: site, Dst: remote, Proto: uint8(tc.flowP), SPort: tc.sport, DPort: tc.dport, Payload: tc.payload, TTL: 62})
			if !bytes.Equal(ip6(r.Out), ip6(want)) {
				t.Errorf("out at the remote\n got %x\nwant %x", ip6(r.Out), ip6(want))
			}

			// Back: remote -> relay -> CGN (reverse) -> edge -> site.
			reply := xlattest.Spec{Src: remote, Dst: site, Proto: uint8(tc.flowP), SPort: tc.dport, DPort: tc.sport, Payload: tc.payload, TTL: 64, Reply: true}
			r = xlat.Process(xlat.RoleRelayExt, &relayCfg, relay, nil, xlattest.Build(reply))
			if !r.Hit {
				t.Fatalf("relay back: %v", r.Reason)
			}
			// The CGN turns public:C back into the edge's address and port.
			back := nat(t, r.Out, netip.AddrPort{}, c.Edge)
			r = xlat.Process(xlat.RoleEdgeWAN, &edgeCfg, edge, nil, back)
			if !r.Hit {
				t.Fatalf("edge WAN: %v", r.Reason)
			}
			reply.TTL = 62
			want = xlattest.Build(reply)
			if !bytes.Equal(ip6(r.Out), ip6(want)) {
				t.Errorf("back at the site\n got %x\nwant %x", ip6(r.Out), ip6(want))
			}
		})
	}
}

// TestIPv4PairsEndToEnd is TestPairsEndToEnd for the site's public IPv4:
// the edge maps the LAN host's private endpoint, the relay the public one
// the edge announced, and a packet keeps its size all the way.
func TestIPv4PairsEndToEnd(t *testing.T) {
	lanHost, public, remote := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("198.51.100.10")
	edgeAddr, relayAddr := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("198.51.100.6")
	for _, tc := range []struct {
		name                string
		p                   session.Proto
		lport, pport, dport uint16
	}{
		{"tcp", session.TCP, 40000, 1024, 443},
		{"udp", session.UDP, 5353, 5353, 53},
		{"echo", session.ICMP, 77, 2000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lan := session.Flow{Proto: tc.p, Site: netip.AddrPortFrom(lanHost, tc.lport), Remote: netip.AddrPortFrom(remote, tc.dport)}
			announced := lan
			announced.Site = netip.AddrPortFrom(public, tc.pport)
			c := session.Carrier{Proto: tc.p, Edge: netip.AddrPortFrom(edgeAddr, 61000),
				Relay: netip.AddrPortFrom(relayAddr, 20001), Public: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), 1234)}
			eo, eb, err := EdgePair(lan, c)
			if err != nil {
				t.Fatal(err)
			}
			ro, rb, err := RelayPair(announced, c)
			if err != nil {
				t.Fatal(err)
			}
			edgeCfg := xlat.Config{CarrierAddr: edgeAddr, PortLo: 61000, PortHi: 61999, LANv4ToAgent: true}
			relayCfg := xlat.Config{CarrierAddr: relayAddr, PortLo: 20000, PortHi: 29999}
			edge, relay := tablesOf(eo, eb), tablesOf(ro, rb)
			payload := bytes.Repeat([]byte{0x5a}, 1400)

			spec := xlattest.Spec{Src: lanHost, Dst: remote, Proto: uint8(tc.p), SPort: tc.lport, DPort: tc.dport, Payload: payload, TTL: 64}
			r := xlat.Process(xlat.RoleEdgeLAN, &edgeCfg, edge, nil, xlattest.Build(spec))
			if !r.Hit {
				t.Fatalf("edge LAN: %v", r.Reason)
			}
			r = xlat.Process(xlat.RoleRelayExt, &relayCfg, relay, nil, nat(t, r.Out, c.Public, netip.AddrPort{}))
			if !r.Hit {
				t.Fatalf("relay: %v", r.Reason)
			}
			spec.Src, spec.SPort, spec.TTL = public, tc.pport, 62
			if want := xlattest.Build(spec); !bytes.Equal(r.Out[14:], want[14:]) {
				t.Errorf("out at the remote\n got %x\nwant %x", r.Out[14:], want[14:])
			}

			reply := xlattest.Spec{Src: remote, Dst: public, Proto: uint8(tc.p), SPort: tc.dport, DPort: tc.pport, Payload: payload, TTL: 64, Reply: true}
			r = xlat.Process(xlat.RoleRelayExt, &relayCfg, relay, nil, xlattest.Build(reply))
			if !r.Hit {
				t.Fatalf("relay back: %v", r.Reason)
			}
			r = xlat.Process(xlat.RoleEdgeWAN, &edgeCfg, edge, nil, nat(t, r.Out, netip.AddrPort{}, c.Edge))
			if !r.Hit {
				t.Fatalf("edge WAN: %v", r.Reason)
			}
			reply.Dst, reply.DPort, reply.TTL = lanHost, tc.lport, 62
			if want := xlattest.Build(reply); !bytes.Equal(r.Out[14:], want[14:]) {
				t.Errorf("back at the LAN host\n got %x\nwant %x", r.Out[14:], want[14:])
			}
		})
	}
}

func TestPairRefusals(t *testing.T) {
	lan := session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("192.0.2.2:80"), Remote: netip.MustParseAddrPort("198.51.100.10:1")}
	c := session.Carrier{Proto: session.UDP, Edge: netip.MustParseAddrPort("100.64.0.2:61000"), Relay: netip.MustParseAddrPort("198.51.100.6:20000")}
	if _, _, err := EdgePair(lan, c); err == nil {
		t.Error("IPv4 TCP flow on a UDP carrier accepted")
	}
	mixed := session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("192.0.2.2:80"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:1")}
	c.Proto = session.TCP
	if _, _, err := EdgePair(mixed, c); err == nil {
		t.Error("flow mixing families accepted")
	}
	f := session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:80"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:1")}
	c.Proto = session.UDP
	if _, _, err := EdgePair(f, c); err == nil {
		t.Error("TCP flow on a UDP carrier accepted")
	}
	c.Proto = session.TCP
	if _, _, err := RelayPair(f, c); err == nil {
		t.Error("relay pair of an unbound carrier accepted")
	}
}

// ip6 is an IPv6 frame's packet without Ethernet header or padding.
func ip6(frame []byte) []byte {
	if len(frame) < 14+40 {
		return frame
	}
	n := 14 + 40 + int(binary.BigEndian.Uint16(frame[14+4:]))
	return frame[14:min(n, len(frame))]
}
