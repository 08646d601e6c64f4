package portmap

import (
	"errors"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/portmap/natpmp"
)

// natpmpResults is each refusal's NAT-PMP result code (RFC 6886 §3.5
// has only these five).
func natpmpResult(why Reason) uint16 {
	switch why {
	case OK:
		return natpmp.Success
	case NoExternal:
		return natpmp.NetworkFailure
	case HostQuota, SiteQuota, NoFreePort, PortUnavailable:
		return natpmp.OutOfResources
	case UnsupportedOpcode:
		return natpmp.UnsupportedOpcode
	case UnsupportedVersion:
		return natpmp.UnsupportedVersion
	}
	return natpmp.NotAuthorized
}

// natpmp answers a NAT-PMP request.
func (s *Server) natpmp(b []byte, src netip.AddrPort, now time.Time) []byte {
	s.t.Request(ViaNATPMP)
	epoch := s.t.Epoch(now)
	r, err := natpmp.ParseRequest(b)
	var nerr *natpmp.Error
	switch {
	case errors.As(err, &nerr):
		why := UnsupportedOpcode
		if nerr.Result == natpmp.UnsupportedVersion {
			why = UnsupportedVersion
		}
		s.t.Refused(why)
		return (&natpmp.Response{Opcode: b[1], Result: nerr.Result, Epoch: epoch}).Append(nil)
	case err != nil:
		s.t.Refused(Malformed)
		return nil
	}
	client := src.Addr().Unmap()
	if !client.Is4() {
		// NAT-PMP maps IPv4 only.
		s.t.Refused(NotAllowed)
		return nil
	}
	resp := &natpmp.Response{Opcode: r.Opcode, Epoch: epoch}
	if r.Opcode == natpmp.OpExternalAddress {
		resp.External = s.t.External4For(client)
		if !resp.External.IsValid() {
			s.t.Refused(NoExternal)
			resp.Result = natpmp.NetworkFailure
		}
		return resp.Append(nil)
	}
	proto := UDP
	if r.Opcode == natpmp.OpMapTCP {
		proto = TCP
	}
	resp.InternalPort = r.InternalPort
	if r.Lifetime == 0 {
		// Delete: one mapping, or with internal port 0 all the
		// client's mappings of the protocol (§3.4).
		if r.InternalPort == 0 {
			s.t.UnmapAll(ViaNATPMP, client, proto, [12]byte{})
		} else if _, why := s.t.Unmap(ViaNATPMP, client, proto, netip.AddrPortFrom(client, r.InternalPort), [12]byte{}); why != OK {
			resp.Result = natpmpResult(why)
		}
		return resp.Append(nil)
	}
	if r.InternalPort == 0 {
		s.t.Refused(Malformed)
		resp.Result = natpmp.NotAuthorized
		return resp.Append(nil)
	}
	g, why := s.t.Map(Request{Via: ViaNATPMP, Client: client, Proto: proto, Internal: netip.AddrPortFrom(client, r.InternalPort),
		Port: r.ExternalPort, Lifetime: s.t.pol.Lifetime(time.Duration(r.Lifetime) * time.Second)}, now)
	if why != OK {
		resp.Result = natpmpResult(why)
		return resp.Append(nil)
	}
	resp.ExternalPort = g.External.Port()
	resp.Lifetime = uint32(max(g.Expires.Sub(now), 0) / time.Second)
	return resp.Append(nil)
}

// natpmpUnsupportedVersion answers a PCP request when only NAT-PMP is
// served: the client falls back to NAT-PMP (RFC 6887 §9).
func natpmpUnsupportedVersion(op byte, epoch uint32) []byte {
	return (&natpmp.Response{Opcode: op &^ 0x80, Result: natpmp.UnsupportedVersion, Epoch: epoch}).Append(nil)[:8]
}

// natpmpAddressResponse is the external address announcement.
func natpmpAddressResponse(ext netip.Addr, epoch uint32) []byte {
	return (&natpmp.Response{Opcode: natpmp.OpExternalAddress, Epoch: epoch, External: ext}).Append(nil)
}
