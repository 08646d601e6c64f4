package portmap

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/unmap-dev/unmap/portmap/upnp"
)

// serveSSDP answers M-SEARCHes with the devices' description locations.
func (s *Server) serveSSDP(c *net.UDPConn) error {
	buf := make([]byte, upnp.MaxSearchSize+1)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if n > upnp.MaxSearchSize {
			s.t.Refused(Oversize)
			continue
		}
		if !s.admit(src.Addr(), time.Now()) {
			continue
		}
		for _, out := range s.HandleSSDP(buf[:n], src) {
			_, _ = c.WriteToUDPAddrPort(out, src)
		}
	}
}

// HandleSSDP is the answers to one SSDP datagram (none for anything but
// an M-SEARCH for one of the devices' types).
func (s *Server) HandleSSDP(b []byte, src netip.AddrPort) [][]byte {
	q, err := upnp.ParseSearch(b)
	if errors.Is(err, upnp.ErrNotSearch) {
		return nil
	}
	if err != nil {
		s.t.Refused(Malformed)
		return nil
	}
	host := s.localFor(src.Addr())
	if !host.IsValid() {
		return nil
	}
	var out [][]byte
	for _, d := range []upnp.Device{s.dev1, s.dev2} {
		loc := "http://" + netip.AddrPortFrom(host, s.cfg.HTTPPort).String() + d.Path()
		for _, st := range d.Answers(q.ST) {
			out = append(out, upnp.Answer{ST: st, USN: d.USN(st), Location: loc, Server: "Linux UPnP/1.1 unmap/1", MaxAge: 1800}.Append(nil))
		}
	}
	return out
}

// localFor is the LAN interface's IPv4 address on src's network (the
// first one if none is), where src reaches the description.
func (s *Server) localFor(src netip.Addr) netip.Addr {
	for _, p := range s.lan4 {
		if p.Contains(src.Unmap()) {
			return p.Addr()
		}
	}
	if len(s.lan4) > 0 {
		return s.lan4[0].Addr()
	}
	return netip.Addr{}
}

// ifacePrefixes4 is an interface's IPv4 addresses with their lengths.
func ifacePrefixes4(ifi *net.Interface) ([]netip.Prefix, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, ok := netip.AddrFromSlice(n.IP)
			bits, _ := n.Mask.Size()
			if ok && ip.Unmap().Is4() {
				out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
			}
		}
	}
	return out, nil
}

func (s *Server) httpServer() *http.Server {
	mux := http.NewServeMux()
	for _, d := range []upnp.Device{s.dev1, s.dev2} {
		desc := d.Description(s.cfg.Name)
		mux.HandleFunc("GET "+d.Path(), func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
			_, _ = w.Write(desc)
		})
	}
	mux.HandleFunc("GET /scpd/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
		_, _ = w.Write(upnp.SCPD())
	})
	for _, p := range []string{upnp.ControlIP, upnp.ControlCommon, upnp.ControlIPv6FW} {
		mux.HandleFunc("POST "+p, s.soap)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8192,
		ErrorLog: nil}
}

// soap serves one SOAP action.
func (s *Server) soap(w http.ResponseWriter, r *http.Request) {
	s.t.Request(ViaUPnP)
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		fault(w, 501, "Action Failed")
		return
	}
	if !s.admit(ap.Addr(), time.Now()) {
		http.Error(w, "too many requests", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, upnp.MaxSOAPSize))
	if err != nil {
		s.t.Refused(Oversize)
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	a, err := upnp.ParseAction(body)
	if err != nil {
		s.t.Refused(Malformed)
		fault(w, 402, "Invalid Args")
		return
	}
	if h := r.Header.Get("SOAPACTION"); h != "" && strings.Trim(h, `"`) != a.Service+"#"+a.Name {
		s.t.Refused(Malformed)
		fault(w, 401, "Invalid Action")
		return
	}
	out, code, why := s.HandleAction(a, ap.Addr().Unmap(), time.Now())
	if code != 0 {
		s.t.Refused(why)
		fault(w, code, upnpErrors[code])
		return
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	_, _ = w.Write(upnp.AppendResponse(nil, a.Service, a.Name, out))
}

func fault(w http.ResponseWriter, code int, desc string) {
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(upnp.AppendFault(nil, code, desc))
}

// UPnP error codes the server answers with (IGD's WANIPConnection and
// WANIPv6FirewallControl specifications).
var upnpErrors = map[int]string{
	401: "Invalid Action", 402: "Invalid Args", 501: "Action Failed", 606: "Action not authorized",
	701: "PinholeSpaceExhausted", 704: "NoSuchEntry", 705: "ProtocolNotSupported",
	706: "InternalPortWildcardingNotAllowed", 713: "SpecifiedArrayIndexInvalid",
	714: "NoSuchEntryInArray", 716: "WildCardNotPermittedInExtPort", 718: "ConflictInMappingEntry",
	728: "NoPortMapsAvailable",
}

// upnpCode is each refusal's UPnP error for port mappings.
func upnpCode(why Reason, pinhole bool) int {
	switch why {
	case NotSelf, NotAllowed, NotOwner, Disabled, IPv4Only:
		return 606
	case PortUnavailable:
		if pinhole {
			return 701
		}
		return 718
	case HostQuota, SiteQuota, NoFreePort:
		if pinhole {
			return 701
		}
		return 728
	case NotFound:
		if pinhole {
			return 704
		}
		return 714
	case UnsupportedProto:
		if pinhole {
			return 705
		}
		return 402
	case NoExternal:
		return 501
	}
	return 402
}

// HandleAction runs one SOAP action for client: its output arguments,
// or a UPnP error code and the refusal it counts.
func (s *Server) HandleAction(a *upnp.Action, client netip.Addr, now time.Time) (out []upnp.Arg, code int, why Reason) {
	bad := func(r Reason) ([]upnp.Arg, int, Reason) { return nil, 402, r }
	switch a.Service {
	case upnp.WANIPConn1, upnp.WANIPConn2:
	case upnp.WANCommon1:
		if a.Name == "GetCommonLinkProperties" {
			return []upnp.Arg{{"NewWANAccessType", "Ethernet"}, {"NewLayer1UpstreamMaxBitRate", "0"},
				{"NewLayer1DownstreamMaxBitRate", "0"}, {"NewPhysicalLinkStatus", "Up"}}, 0, OK
		}
		return nil, 401, UnsupportedOpcode
	case upnp.WANIPv6FW1:
		return s.pinholeAction(a, client, now)
	default:
		return nil, 401, UnsupportedOpcode
	}
	v2 := a.Service == upnp.WANIPConn2
	switch a.Name {
	case "GetExternalIPAddress":
		ext := s.t.External4()
		if !ext.IsValid() {
			return nil, 501, NoExternal
		}
		return []upnp.Arg{{"NewExternalIPAddress", ext.String()}}, 0, OK
	case "GetStatusInfo":
		st := "Connected"
		if !s.t.External4().IsValid() {
			st = "Disconnected"
		}
		return []upnp.Arg{{"NewConnectionStatus", st}, {"NewLastConnectionError", "ERROR_NONE"},
			{"NewUptime", strconv.FormatUint(uint64(s.t.Epoch(now)), 10)}}, 0, OK
	case "AddPortMapping", "AddAnyPortMapping":
		if a.Name == "AddAnyPortMapping" && !v2 {
			return nil, 401, UnsupportedOpcode
		}
		proto, ok := upnpProto(a.Args["NewProtocol"])
		if !ok {
			return bad(UnsupportedProto)
		}
		ext, err1 := strconv.ParseUint(a.Args["NewExternalPort"], 10, 16)
		in, err2 := strconv.ParseUint(a.Args["NewInternalPort"], 10, 16)
		lease, err3 := strconv.ParseUint(a.Args["NewLeaseDuration"], 10, 32)
		host, err4 := netip.ParseAddr(a.Args["NewInternalClient"])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || in == 0 {
			return bad(Malformed)
		}
		if ext == 0 && a.Name == "AddPortMapping" {
			return nil, 716, Malformed
		}
		filters, ok := remoteFilter(a.Args["NewRemoteHost"], 0)
		if !ok {
			return bad(Malformed)
		}
		// Lease 0 is "permanent" in IGDv1 and the longest allowed in
		// IGDv2: both get the policy's maximum.
		d := s.t.pol.MaxLifetime
		if lease > 0 {
			d = s.t.pol.Lifetime(time.Duration(lease) * time.Second)
		}
		g, why := s.t.Map(Request{Via: ViaUPnP, Client: client, Proto: proto, Internal: netip.AddrPortFrom(host.Unmap(), uint16(in)),
			Port: uint16(ext), Exact: a.Name == "AddPortMapping", Lifetime: d, Filters: filters,
			Description: bounded(a.Args["NewPortMappingDescription"])}, now)
		if why != OK {
			return nil, upnpCode(why, false), OK // counted by Map
		}
		if a.Name == "AddAnyPortMapping" {
			return []upnp.Arg{{"NewReservedPort", strconv.Itoa(int(g.External.Port()))}}, 0, OK
		}
		return nil, 0, OK
	case "DeletePortMapping":
		proto, ok := upnpProto(a.Args["NewProtocol"])
		ext, err := strconv.ParseUint(a.Args["NewExternalPort"], 10, 16)
		if !ok || err != nil {
			return bad(Malformed)
		}
		if why := s.t.UnmapExternal(client, proto, uint16(ext)); why != OK {
			return nil, upnpCode(why, false), OK
		}
		return nil, 0, OK
	case "GetSpecificPortMappingEntry":
		proto, ok := upnpProto(a.Args["NewProtocol"])
		ext, err := strconv.ParseUint(a.Args["NewExternalPort"], 10, 16)
		if !ok || err != nil {
			return bad(Malformed)
		}
		m, found := s.t.ByExternal(proto, uint16(ext))
		if !found {
			return nil, 714, NotFound
		}
		return entryArgs(m, now, false), 0, OK
	case "GetGenericPortMappingEntry":
		i, err := strconv.ParseUint(a.Args["NewPortMappingIndex"], 10, 16)
		if err != nil {
			return bad(Malformed)
		}
		n := uint64(0)
		for _, m := range s.t.Mappings() {
			if !m.Internal.Addr().Is4() {
				continue
			}
			if n == i {
				return entryArgs(m, now, true), 0, OK
			}
			n++
		}
		return nil, 713, NotFound
	}
	return nil, 401, UnsupportedOpcode
}

// entryArgs are a port mapping entry's output arguments.
func entryArgs(m Mapping, now time.Time, generic bool) []upnp.Arg {
	var out []upnp.Arg
	if generic {
		remote := ""
		if len(m.Filters) > 0 {
			remote = m.Filters[0].Remote.Addr().String()
		}
		out = append(out, upnp.Arg{"NewRemoteHost", remote},
			upnp.Arg{"NewExternalPort", strconv.Itoa(int(m.External.Port()))},
			upnp.Arg{"NewProtocol", strings.ToUpper(m.Proto.String())})
	}
	return append(out, upnp.Arg{"NewInternalPort", strconv.Itoa(int(m.Internal.Port()))},
		upnp.Arg{"NewInternalClient", m.Internal.Addr().String()},
		upnp.Arg{"NewEnabled", "1"},
		upnp.Arg{"NewPortMappingDescription", m.Description},
		upnp.Arg{"NewLeaseDuration", strconv.Itoa(int(max(m.Expires.Sub(now), 0) / time.Second))})
}

// pinholeAction serves WANIPv6FirewallControl: pinholes for the host's
// own IPv6 address, asked over IPv6.
func (s *Server) pinholeAction(a *upnp.Action, client netip.Addr, now time.Time) ([]upnp.Arg, int, Reason) {
	switch a.Name {
	case "GetFirewallStatus":
		return []upnp.Arg{{"FirewallEnabled", "1"}, {"InboundPinholeAllowed", "1"}}, 0, OK
	case "GetOutboundPinholeTimeout":
		p, _ := strconv.ParseUint(a.Args["Protocol"], 10, 16)
		proto := UDP
		if p == uint64(TCP) {
			proto = TCP
		}
		return []upnp.Arg{{"OutboundPinholeTimeout", strconv.Itoa(int(s.cfg.OutboundTimeout(proto) / time.Second))}}, 0, OK
	case "AddPinhole":
		p, err1 := strconv.ParseUint(a.Args["Protocol"], 10, 16)
		in, err2 := strconv.ParseUint(a.Args["InternalPort"], 10, 16)
		lease, err3 := strconv.ParseUint(a.Args["LeaseTime"], 10, 32)
		host, err4 := netip.ParseAddr(a.Args["InternalClient"])
		rport, err5 := strconv.ParseUint(a.Args["RemotePort"], 10, 16)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || lease == 0 || !host.Is6() || host.Is4In6() {
			return nil, 402, Malformed
		}
		if p != uint64(TCP) && p != uint64(UDP) {
			return nil, 705, UnsupportedProto
		}
		if in == 0 {
			return nil, 706, Malformed
		}
		filters, ok := remoteFilter(a.Args["RemoteHost"], uint16(rport))
		if !ok {
			return nil, 402, Malformed
		}
		g, why := s.t.Map(Request{Via: ViaUPnP, Client: client, Proto: Proto(p), Internal: netip.AddrPortFrom(host, uint16(in)),
			Lifetime: s.t.pol.Lifetime(time.Duration(lease) * time.Second), Filters: filters}, now)
		if why != OK {
			return nil, upnpCode(why, true), OK
		}
		return []upnp.Arg{{"UniqueID", strconv.Itoa(int(g.ID))}}, 0, OK
	case "UpdatePinhole", "DeletePinhole":
		id, err := strconv.ParseUint(a.Args["UniqueID"], 10, 32)
		if err != nil {
			return nil, 402, Malformed
		}
		d := time.Duration(0)
		if a.Name == "UpdatePinhole" {
			lease, err := strconv.ParseUint(a.Args["NewLeaseTime"], 10, 32)
			if err != nil || lease == 0 {
				return nil, 402, Malformed
			}
			d = s.t.pol.Lifetime(time.Duration(lease) * time.Second)
		}
		if m, ok := s.t.ByID(uint32(id)); !ok || !m.Internal.Addr().Is6() {
			return nil, 704, NotFound
		}
		if _, why := s.t.Renew(client, uint32(id), d, now); why != OK {
			return nil, upnpCode(why, true), OK
		}
		return nil, 0, OK
	}
	return nil, 401, UnsupportedOpcode
}

func upnpProto(s string) (Proto, bool) {
	switch strings.ToUpper(s) {
	case "TCP":
		return TCP, true
	case "UDP":
		return UDP, true
	}
	return 0, false
}

// remoteFilter is a RemoteHost argument as a filter: empty or a wildcard
// admits any remote.
func remoteFilter(host string, port uint16) ([]Filter, bool) {
	if host == "" || host == "*" || host == "0.0.0.0" || host == "::" {
		if port == 0 {
			return nil, true
		}
		return []Filter{{Remote: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Port: port}, {Remote: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Port: port}}, true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, false
	}
	a = a.Unmap()
	return []Filter{{Remote: netip.PrefixFrom(a, a.BitLen()), Port: port}}, true
}

// bounded keeps a description short (it is logged and listed).
func bounded(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.ToValidUTF8(s, "?")
}
