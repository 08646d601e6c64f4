package portmap

import (
	"errors"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/portmap/pcp"
)

// Lifetimes of PCP error answers (RFC 6887 §7.4): how long a client
// should take the error to hold.
const (
	longError  = 30 * 60 // a request that will not work as it is
	shortError = 30      // resources that may free up
)

// pcpResults is each refusal's PCP result code.
var pcpResults = [numReasons]pcp.Result{
	OK: pcp.Success, Malformed: pcp.MalformedRequest, Oversize: pcp.MalformedRequest,
	UnsupportedVersion: pcp.UnsuppVersion, UnsupportedOpcode: pcp.UnsuppOpcode,
	UnsupportedOption: pcp.UnsuppOption, MalformedOption: pcp.MalformedOption,
	UnsupportedProto: pcp.UnsuppProtocol, AddressMismatch: pcp.AddressMismatch,
	NotSelf: pcp.NotAuthorized, NotAllowed: pcp.NotAuthorized, HostQuota: pcp.UserExQuota,
	SiteQuota: pcp.NoResources, PortUnavailable: pcp.CannotProvideExternal, NoFreePort: pcp.NoResources,
	NoExternal: pcp.NetworkFailure, CannotProvideExternal: pcp.CannotProvideExternal,
	NotOwner: pcp.NotAuthorized, NotFound: pcp.NotAuthorized, TooManyFilters: pcp.ExcessiveRemotePeers,
	Disabled: pcp.NotAuthorized, IPv4Only: pcp.NotAuthorized,
}

// pcpReason is the Reason counted for a request the parser refused.
func pcpReason(r pcp.Result) Reason {
	switch r {
	case pcp.UnsuppVersion:
		return UnsupportedVersion
	case pcp.UnsuppOpcode:
		return UnsupportedOpcode
	case pcp.UnsuppOption:
		return UnsupportedOption
	case pcp.MalformedOption:
		return MalformedOption
	}
	return Malformed
}

func errorLifetime(r pcp.Result) uint32 {
	switch r {
	case pcp.NetworkFailure, pcp.NoResources, pcp.UserExQuota, pcp.CannotProvideExternal, pcp.ExcessiveRemotePeers:
		return shortError
	}
	return longError
}

// pcp answers a PCP request.
func (s *Server) pcp(b []byte, src netip.AddrPort, now time.Time) []byte {
	s.t.Request(ViaPCP)
	epoch := s.t.Epoch(now)
	m, err := pcp.ParseRequest(b)
	if errors.Is(err, pcp.ErrDrop) {
		s.t.Refused(Malformed)
		return nil
	}
	var perr *pcp.Error
	if errors.As(err, &perr) {
		s.t.Refused(pcpReason(perr.Result))
		return pcp.ErrorResponse(b, perr.Result, errorLifetime(perr.Result), epoch)
	}
	refuse := func(why Reason) []byte {
		s.t.Refused(why)
		r := pcpResults[why]
		return pcp.ErrorResponse(b, r, errorLifetime(r), epoch)
	}
	client := src.Addr().Unmap()
	if m.Client != client {
		// A NAT between client and server: its mappings would be for
		// the NAT's address (RFC 6887 §8.3).
		return refuse(AddressMismatch)
	}
	if m.Opcode == pcp.OpAnnounce {
		return (&pcp.Message{Response: true, Opcode: pcp.OpAnnounce, Epoch: epoch}).Append(nil)
	}
	if m.Opcode == pcp.OpMap && m.Lifetime == 0 && m.Map.Protocol == 0 && m.Map.InternalPort == 0 {
		// All protocols, all ports: the client's mappings of this
		// nonce go (RFC 6887 §15).
		s.t.UnmapAll(ViaPCP, client, 0, m.Map.Nonce)
		return (&pcp.Message{Response: true, Opcode: pcp.OpMap, Epoch: epoch, Map: m.Map}).Append(nil)
	}
	if s.t.pc != nil && m.Opcode == pcp.OpPeer {
		// A PEER's mapping admits its peer only: a PerClient backend
		// admits anyone (PerClient).
		return refuse(UnsupportedOpcode)
	}
	if s.t.pc != nil && len(m.Filters) > 0 {
		// FILTER is mandatory to process (RFC 6887 §13.3): refused
		// rather than ignored, so the client knows its mapping would
		// admit anyone.
		return refuse(UnsupportedOption)
	}
	if m.Map.Protocol != uint8(TCP) && m.Map.Protocol != uint8(UDP) {
		// Protocol 0 (all protocols) included: mappings are per port.
		return refuse(UnsupportedProto)
	}
	host := client
	if m.ThirdParty.IsValid() {
		if !s.t.pol.ThirdParty && m.ThirdParty != client {
			return refuse(NotSelf)
		}
		host = m.ThirdParty
	}
	proto := Proto(m.Map.Protocol)
	resp := &pcp.Message{Response: true, Opcode: m.Opcode, Epoch: epoch, Map: m.Map, Peer: m.Peer,
		ThirdParty: m.ThirdParty, Filters: m.Filters}
	if m.Lifetime == 0 {
		if m.Opcode == pcp.OpPeer {
			// PEER with lifetime 0 is malformed (§12.1).
			return refuse(Malformed)
		}
		if m.Map.InternalPort == 0 {
			s.t.UnmapAll(ViaPCP, client, proto, m.Map.Nonce)
		} else if _, why := s.t.Unmap(ViaPCP, client, proto, netip.AddrPortFrom(host, m.Map.InternalPort), m.Map.Nonce); why != OK {
			return refuse(why)
		}
		resp.Map.ExternalPort, resp.Map.ExternalAddr = 0, netip.Addr{}
		return resp.Append(nil)
	}
	if m.Map.InternalPort == 0 {
		return refuse(Malformed) // all ports only with protocol 0, which is refused above
	}
	req := Request{Via: ViaPCP, Client: client, Proto: proto, Internal: netip.AddrPortFrom(host, m.Map.InternalPort),
		Port: m.Map.ExternalPort, Exact: m.PreferFailure, Lifetime: s.t.pol.Lifetime(time.Duration(m.Lifetime) * time.Second),
		Nonce: m.Map.Nonce}
	for _, f := range m.Filters {
		req.Filters = append(req.Filters, Filter{Remote: f.Prefix, Port: f.Port})
	}
	if m.Opcode == pcp.OpPeer {
		req.Peer = true
		bits := 128
		if m.Peer.RemoteAddr.Is4() {
			bits = 32
		}
		req.Filters = []Filter{{Remote: netip.PrefixFrom(m.Peer.RemoteAddr, bits), Port: m.Peer.RemotePort}}
	}
	if want := m.Map.ExternalAddr; m.PreferFailure && host.Is4() && want.IsValid() && !want.IsUnspecified() && want != s.t.External4For(client) {
		return refuse(CannotProvideExternal)
	}
	g, why := s.t.Map(req, now)
	if why != OK {
		r := pcpResults[why]
		return pcp.ErrorResponse(b, r, errorLifetime(r), epoch)
	}
	resp.Lifetime = uint32(max(g.Expires.Sub(now), 0) / time.Second)
	resp.Map.ExternalPort, resp.Map.ExternalAddr = g.External.Port(), g.External.Addr()
	return resp.Append(nil)
}
