package relay

import (
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// capabilities are the optional features this relay supports.
const capabilities = proto.CapIPv4Public | proto.CapTCPOffer | proto.CapUDPCarrier | proto.CapCounters

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

// welcome answers the Hello of the edge whose certificate names certSite:
// the session's grant, or the code that refuses it.
func (s *Settings) welcome(certSite string, h *proto.Hello, sessionID uint64, keepalive time.Duration) (*proto.Welcome, proto.Code) {
	site, ok := s.site(certSite)
	switch {
	case !ok:
		return nil, proto.CodeUnknownSite
	case h.Site != certSite:
		return nil, proto.CodeSiteMismatch
	case h.WantPrefix.IsValid() && !(h.WantPrefix.Bits() >= site.Prefix.Bits() && site.Prefix.Contains(h.WantPrefix.Addr())):
		return nil, proto.CodePrefixNotGranted
	case h.WantIPv4.IsValid() && h.WantIPv4 != site.IPv4:
		return nil, proto.CodeAddressNotGranted
	}
	w := &proto.Welcome{
		Version:      min(h.Version, proto.Version),
		Capabilities: h.Capabilities & capabilities,
		SessionID:    sessionID,
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
	if site.IPv4.IsValid() && w.Capabilities.Has(proto.CapIPv4Public) {
		w.PublicIPv4 = site.IPv4
		if site.IPv4Ports.Len() < 65535 {
			w.PublicPorts = proto.PortRange{First: site.IPv4Ports.First, Last: site.IPv4Ports.Last}
		}
	}
	r := proto.PortRange{First: s.CarrierPorts.First, Last: s.CarrierPorts.Last}
	for _, p := range []session.Proto{session.TCP, session.UDP, session.ICMP} {
		w.CarrierRanges = append(w.CarrierRanges, proto.CarrierRange{Proto: p, Ports: r})
	}
	return w, proto.CodeOK
}
