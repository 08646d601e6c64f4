package relay

import (
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// capabilities are the optional features this relay supports; the
// control server narrows them to what each edge offers.
const capabilities = proto.CapIPv4Public | proto.CapTCPOffer | proto.CapUDPCarrier | proto.CapCounters | proto.CapEdgeChoosesR | proto.CapRebind

// carrierKeepalive is how often an edge refreshes an idle carrier's CGNAT
// mapping: below the 30 s UDP timeout some CGNATs use.
const carrierKeepalive = 20 * time.Second

// site finds the site a certificate names.
func (s *Settings) site(id string) (*Site, bool) {
	for i := range s.Sites {
		if s.Sites[i].ID == id {
			return &s.Sites[i], true
		}
	}
	return nil, false
}

// grant is what relay.yaml gives the site a certificate names, as the
// Welcome the control server completes (version, session id) and checks
// the edge's Hello against; proto.CodeUnknownSite if no site has that id.
func (s *Settings) grant(id string, keepalive time.Duration) (*proto.Welcome, error) {
	site, ok := s.site(id)
	if !ok {
		return nil, proto.CodeUnknownSite
	}
	w := &proto.Welcome{
		Capabilities: capabilities,
		Prefix:       site.Prefix,
		Timers: proto.Timers{
			KeepaliveMS:        uint32(keepalive / time.Millisecond),
			CarrierKeepaliveMS: uint32(carrierKeepalive / time.Millisecond),
			UDPSec:             uint32(s.Timers.UDP / time.Second),
			TCPEstablishedSec:  uint32(s.Timers.TCPEstablished / time.Second),
			TCPTransitorySec:   uint32(s.Timers.TCPTransitory / time.Second),
			ICMPSec:            uint32(s.Timers.ICMP / time.Second),
		},
		RelayAddrs: s.Addresses,
	}
	if site.IPv4.IsValid() {
		w.PublicIPv4 = site.IPv4
		if site.IPv4Ports.Len() < 65535 {
			w.PublicPorts = proto.PortRange{First: site.IPv4Ports.First, Last: site.IPv4Ports.Last}
		}
	}
	r := proto.PortRange{First: s.CarrierPorts.First, Last: s.CarrierPorts.Last}
	for _, p := range []session.Proto{session.TCP, session.UDP, session.ICMP} {
		w.CarrierRanges = append(w.CarrierRanges, proto.CarrierRange{Proto: p, Ports: r})
	}
	return w, nil
}
