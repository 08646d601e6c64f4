package portmap

import (
	"cmp"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.First && p <= r.Last }

// Policy is what the table grants. A zero field means its default
// (Defaults).
type Policy struct {
	MinLifetime, MaxLifetime time.Duration // a request's lifetime is clamped into these
	PerHost                  int           // mappings one host may hold at once
	PerSite                  int           // mappings the whole table holds at once
	ThirdParty               bool          // a host may map another host's address (PCP THIRD_PARTY, UPnP NewInternalClient)
	Allowed                  []netip.Prefix
	Ports                    PortRange   // external IPv4 ports mappings may take
	Reserved                 []PortRange // external ports never given, whatever the backend says
}

// Default bounds.
const (
	DefaultMinLifetime = 2 * time.Minute
	DefaultMaxLifetime = 24 * time.Hour
	DefaultPerHost     = 32
	DefaultPerSite     = 256
	// MaxFilters bounds the FILTERs one mapping keeps (RFC 6887 §13.3
	// lets a server refuse more with EXCESSIVE_REMOTE_PEERS).
	MaxFilters = 4
	// maxProbes bounds the candidate ports one request looks at, and
	// maxBackendTries the backend refusals it takes, so a full port
	// space costs a bounded search.
	maxProbes       = 4096
	maxBackendTries = 64
)

// Defaults fills in the zero fields.
func (p Policy) Defaults() Policy {
	if p.MinLifetime == 0 {
		p.MinLifetime = DefaultMinLifetime
	}
	if p.MaxLifetime == 0 {
		p.MaxLifetime = max(DefaultMaxLifetime, p.MinLifetime)
	}
	if p.PerHost == 0 {
		p.PerHost = DefaultPerHost
	}
	if p.PerSite == 0 {
		p.PerSite = DefaultPerSite
	}
	if p.Ports == (PortRange{}) {
		p.Ports = PortRange{First: 1024, Last: 65535}
	}
	return p
}

// Lifetime clamps a requested lifetime (not zero: zero deletes) into the
// policy's bounds.
func (p Policy) Lifetime(d time.Duration) time.Duration {
	return min(max(d, p.MinLifetime), p.MaxLifetime)
}

// Request asks for a mapping.
type Request struct {
	Via         Via
	Client      netip.Addr // the packet's source
	Proto       Proto
	Internal    netip.AddrPort
	Port        uint16        // suggested external port; 0: the internal one
	Exact       bool          // the suggested port or failure (PCP PREFER_FAILURE, UPnP AddPortMapping)
	Lifetime    time.Duration // already clamped (Policy.Lifetime)
	Nonce       [12]byte
	Filters     []Filter
	Description string
	// Peer marks a PCP PEER: it renews the host's mapping of the
	// internal endpoint without narrowing it to the one peer, and makes
	// one (admitting that peer only) when there is none.
	Peer bool
}

type key struct {
	proto Proto
	ep    netip.AddrPort
}

// Table holds the granted mappings: one per protocol and internal
// endpoint, and one per protocol and external endpoint. It is safe for
// concurrent use.
type Table struct {
	pol     Policy
	be      Backend
	pc      PerClient // be, when its ports are per client
	log     *slog.Logger
	started time.Time
	c       counters

	mu     sync.Mutex
	byInt  map[key]*Mapping
	byExt  map[key]*Mapping
	byID   map[uint32]*Mapping
	hosts  map[netip.Addr]int
	nextID uint32
}

// NewTable makes an empty table; its epoch starts now.
func NewTable(pol Policy, be Backend, log *slog.Logger) *Table {
	if log == nil {
		log = slog.Default()
	}
	pc, _ := be.(PerClient)
	return &Table{pol: pol.Defaults(), be: be, pc: pc, log: log, started: time.Now(),
		byInt: map[key]*Mapping{}, byExt: map[key]*Mapping{}, byID: map[uint32]*Mapping{}, hosts: map[netip.Addr]int{}}
}

// Policy is the table's policy, defaults filled in.
func (t *Table) Policy() Policy { return t.pol }

// Epoch is the seconds since the table started: PCP's and NAT-PMP's
// epoch, which a client that sees it go back takes for a restart.
func (t *Table) Epoch(now time.Time) uint32 {
	return uint32(max(now.Sub(t.started), 0) / time.Second)
}

// External4 is the backend's public IPv4, invalid when there is none.
func (t *Table) External4() netip.Addr {
	a, _, _ := t.be.External4()
	return a
}

// External4For is the public IPv4 client's mappings are on: a PerClient
// backend's for that client, else External4.
func (t *Table) External4For(client netip.Addr) netip.Addr {
	if t.pc == nil {
		return t.External4()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a, _, _ := t.pc.Place4(client.Unmap(), 0, netip.AddrPort{})
	return a
}

// PerClient reports whether the backend's addresses and ports are the
// client's own (a PerClient backend).
func (t *Table) PerClient() bool { return t.pc != nil }

// Map grants r, or refreshes the mapping its host already holds for the
// internal endpoint. Every refusal is counted.
func (t *Table) Map(r Request, now time.Time) (Mapping, Reason) {
	m, why := t.mapLocked(r, now)
	t.Refused(why)
	return m, why
}

func (t *Table) mapLocked(r Request, now time.Time) (Mapping, Reason) {
	if r.Proto != TCP && r.Proto != UDP {
		return Mapping{}, UnsupportedProto
	}
	r.Client = r.Client.Unmap()
	r.Internal = netip.AddrPortFrom(r.Internal.Addr().Unmap(), r.Internal.Port())
	in := r.Internal.Addr()
	if r.Internal.Port() == 0 || !in.IsValid() {
		return Mapping{}, Malformed
	}
	if in != r.Client && !t.pol.ThirdParty {
		return Mapping{}, NotSelf
	}
	if in.Is6() && t.pc != nil {
		return Mapping{}, IPv4Only
	}
	if !in.IsGlobalUnicast() {
		return Mapping{}, NotAllowed
	}
	if len(t.pol.Allowed) > 0 && !slices.ContainsFunc(t.pol.Allowed, func(p netip.Prefix) bool { return p.Contains(in) }) {
		return Mapping{}, NotAllowed
	}
	if len(r.Filters) > MaxFilters {
		return Mapping{}, TooManyFilters
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.byInt[key{r.Proto, r.Internal}]; old != nil {
		return t.refresh(old, r, now)
	}
	if t.hosts[r.Client] >= t.pol.PerHost {
		return Mapping{}, HostQuota
	}
	if len(t.byID) >= t.pol.PerSite {
		return Mapping{}, SiteQuota
	}
	m := &Mapping{Proto: r.Proto, Internal: r.Internal, Client: r.Client, Via: r.Via, Nonce: r.Nonce,
		Filters: slices.Clone(r.Filters), Description: r.Description, Expires: now.Add(r.Lifetime)}
	if in.Is6() {
		// A pinhole: the host's own address and port.
		m.External = r.Internal
		if t.byExt[key{m.Proto, m.External}] != nil {
			return Mapping{}, PortUnavailable
		}
		if err := t.be.Add(*m); err != nil {
			return Mapping{}, PortUnavailable
		}
	} else if why := t.place(m, r); why != OK {
		return Mapping{}, why
	}
	t.nextID++
	m.ID = t.nextID
	t.byInt[key{m.Proto, m.Internal}] = m
	t.byExt[key{m.Proto, m.External}] = m
	t.byID[m.ID] = m
	t.hosts[m.Client]++
	t.c.granted.Add(1)
	t.log.Info("port mapping granted", "via", m.Via, "client", m.Client, "proto", m.Proto,
		"internal", m.Internal, "external", m.External, "until", m.Expires.UTC().Format(time.RFC3339))
	return *m, OK
}

// refresh renews a host's mapping of an internal endpoint it holds.
func (t *Table) refresh(old *Mapping, r Request, now time.Time) (Mapping, Reason) {
	if old.Client != r.Client || old.Via == ViaPCP && r.Via == ViaPCP && old.Nonce != r.Nonce {
		return Mapping{}, NotOwner
	}
	if r.Exact && r.Port != 0 && old.Internal.Addr().Is4() && r.Port != old.External.Port() {
		return Mapping{}, PortUnavailable
	}
	upd := *old
	upd.Expires = now.Add(r.Lifetime)
	if r.Peer {
		upd.Expires = later(old.Expires, upd.Expires)
	} else {
		// A MAP without FILTERs clears the old ones (RFC 6887 §13.3).
		upd.Filters = slices.Clone(r.Filters)
	}
	if r.Description != "" {
		upd.Description = r.Description
	}
	// Every renewal goes to the backend: its filters or lifetime may
	// have changed (the edge pins the lifetime across restarts).
	if err := t.be.Add(upd); err != nil {
		return Mapping{}, PortUnavailable
	}
	*old = upd
	t.log.Debug("port mapping renewed", "via", r.Via, "client", old.Client, "proto", old.Proto,
		"internal", old.Internal, "external", old.External, "until", old.Expires.UTC().Format(time.RFC3339))
	return upd, OK
}

// Restore puts back a mapping a previous run granted (the edge pins
// them): with its external endpoint and lifetime, if it has not ended
// and its endpoints and quotas are free. It gets a new ID.
func (t *Table) Restore(m Mapping, now time.Time) Reason {
	if !now.Before(m.Expires) {
		return NotFound
	}
	if m.Proto != TCP && m.Proto != UDP || !m.Internal.IsValid() || !m.External.IsValid() || m.Internal.Addr().Is6() && m.External != m.Internal {
		return Malformed
	}
	if m.Internal.Addr().Is6() && t.pc != nil {
		return IPv4Only
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.byInt[key{m.Proto, m.Internal}] != nil || t.byExt[key{m.Proto, m.External}] != nil:
		return PortUnavailable
	case t.hosts[m.Client] >= t.pol.PerHost:
		return HostQuota
	case len(t.byID) >= t.pol.PerSite:
		return SiteQuota
	}
	if m.Internal.Addr().Is4() && t.pc == nil {
		if addr, _, _ := t.be.External4(); addr != m.External.Addr() {
			return NoExternal
		}
	}
	if err := t.be.Add(m); err != nil {
		return PortUnavailable
	}
	t.nextID++
	m.ID = t.nextID
	p := &m
	t.byInt[key{m.Proto, m.Internal}] = p
	t.byExt[key{m.Proto, m.External}] = p
	t.byID[m.ID] = p
	t.hosts[m.Client]++
	t.c.restored.Add(1)
	t.log.Info("port mapping restored", "via", m.Via, "client", m.Client, "proto", m.Proto,
		"internal", m.Internal, "external", m.External, "until", m.Expires.UTC().Format(time.RFC3339))
	return OK
}

// place finds m an external port of the public IPv4: the one asked for
// (the internal one by default) when free, else the nearest free one
// unless r.Exact. A PerClient backend says which address and ports the
// client's mappings may take.
func (t *Table) place(m *Mapping, r Request) Reason {
	addr, ranges, why := t.ports4(m)
	if why != OK {
		return why
	}
	lo, hi := 65535, 0
	for _, g := range ranges {
		lo, hi = min(lo, int(g.First)), max(hi, int(g.Last))
	}
	inRange := func(p int) bool {
		return slices.ContainsFunc(ranges, func(g PortRange) bool { return g.Contains(uint16(p)) })
	}
	want := int(r.Port)
	if want == 0 {
		want = int(r.Internal.Port())
	}
	if lo > hi {
		return NoFreePort
	}
	if r.Exact && (!inRange(want) || t.reserved(uint16(want))) {
		return PortUnavailable
	}
	want = min(max(want, lo), hi)
	refusals, probes := 0, 0
	for d := 0; probes < maxProbes; d++ {
		up, down := want+d, want-d
		if up > hi && down < lo {
			break // both sides exhausted
		}
		for _, p := range [2]int{up, down} {
			if p < lo || p > hi || d == 0 && p == down && probes > 0 || !inRange(p) {
				continue
			}
			probes++
			port := uint16(p)
			if t.reserved(port) || t.byExt[key{m.Proto, netip.AddrPortFrom(addr, port)}] != nil {
				if r.Exact {
					return PortUnavailable
				}
				continue
			}
			m.External = netip.AddrPortFrom(addr, port)
			if err := t.be.Add(*m); err == nil {
				return OK
			}
			if r.Exact {
				return PortUnavailable
			}
			if refusals++; refusals >= maxBackendTries {
				return NoFreePort
			}
		}
	}
	return NoFreePort
}

// ports4 is the public IPv4 and the ports m may take: the backend's
// share within the policy's ports, or a PerClient backend's ports of
// m's client.
func (t *Table) ports4(m *Mapping) (netip.Addr, []PortRange, Reason) {
	if t.pc != nil {
		addr, ranges, why := t.pc.Place4(m.Client, m.Proto, m.Internal)
		if why == OK && !addr.IsValid() {
			why = NoExternal
		}
		var in []PortRange
		for _, g := range ranges {
			if g := (PortRange{max(g.First, t.pol.Ports.First), min(g.Last, t.pol.Ports.Last)}); g.First <= g.Last {
				in = append(in, g)
			}
		}
		return addr, in, why
	}
	addr, first, last := t.be.External4()
	if !addr.IsValid() {
		return addr, nil, NoExternal
	}
	lo, hi := max(first, t.pol.Ports.First), min(last, t.pol.Ports.Last)
	if first == 0 && last == 0 {
		lo, hi = t.pol.Ports.First, t.pol.Ports.Last
	}
	if lo > hi {
		return addr, nil, OK
	}
	return addr, []PortRange{{lo, hi}}, OK
}

func (t *Table) reserved(p uint16) bool {
	return slices.ContainsFunc(t.pol.Reserved, func(r PortRange) bool { return r.Contains(p) })
}

// Unmap deletes the mapping of an internal endpoint. found is false when
// there is none (PCP and NAT-PMP answer that with success). A PCP
// mapping is deleted only with its nonce.
func (t *Table) Unmap(via Via, client netip.Addr, proto Proto, internal netip.AddrPort, nonce [12]byte) (found bool, why Reason) {
	internal = netip.AddrPortFrom(internal.Addr().Unmap(), internal.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byInt[key{proto, internal}]
	if m == nil {
		return false, OK
	}
	if m.Client != client.Unmap() || via == ViaPCP && m.Via == ViaPCP && m.Nonce != nonce {
		t.Refused(NotOwner)
		return true, NotOwner
	}
	t.remove(m, "deleted")
	return true, OK
}

// UnmapAll deletes every mapping client holds for proto (0: both) that
// via made (NAT-PMP's internal port 0, PCP's all-ports delete, which
// takes only the mappings of its nonce).
func (t *Table) UnmapAll(via Via, client netip.Addr, proto Proto, nonce [12]byte) int {
	client = client.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.byID {
		if m.Client == client && m.Via == via && (proto == 0 || m.Proto == proto) && (via != ViaPCP || m.Nonce == nonce) {
			t.remove(m, "deleted")
			n++
		}
	}
	return n
}

// UnmapExternal deletes the mapping of an external port of the public
// IPv4 (UPnP DeletePortMapping), if client owns it.
func (t *Table) UnmapExternal(client netip.Addr, proto Proto, port uint16) Reason {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byExternalLocked(proto, port)
	if m == nil {
		t.Refused(NotFound)
		return NotFound
	}
	if m.Client != client.Unmap() && !t.pol.ThirdParty {
		t.Refused(NotOwner)
		return NotOwner
	}
	t.remove(m, "deleted")
	return OK
}

func (t *Table) byExternalLocked(proto Proto, port uint16) *Mapping {
	addr, _, _ := t.be.External4()
	return t.byExt[key{proto, netip.AddrPortFrom(addr, port)}]
}

// ByExternal is the mapping of an external port of the public IPv4.
func (t *Table) ByExternal(proto Proto, port uint16) (Mapping, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.byExternalLocked(proto, port); m != nil {
		return *m, true
	}
	return Mapping{}, false
}

// ByID is the mapping with the given ID.
func (t *Table) ByID(id uint32) (Mapping, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.byID[id]; m != nil {
		return *m, true
	}
	return Mapping{}, false
}

// Renew sets a new lifetime on the mapping with the given ID if client
// owns it (UPnP UpdatePinhole); lifetime 0 deletes it.
func (t *Table) Renew(client netip.Addr, id uint32, lifetime time.Duration, now time.Time) (Mapping, Reason) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byID[id]
	switch {
	case m == nil:
		t.Refused(NotFound)
		return Mapping{}, NotFound
	case m.Client != client.Unmap() && !t.pol.ThirdParty:
		t.Refused(NotOwner)
		return Mapping{}, NotOwner
	case lifetime == 0:
		t.remove(m, "deleted")
		return *m, OK
	}
	m.Expires = now.Add(lifetime)
	return *m, OK
}

// Mappings is every mapping, by ID.
func (t *Table) Mappings() []Mapping {
	t.mu.Lock()
	out := make([]Mapping, 0, len(t.byID))
	for _, m := range t.byID {
		out = append(out, *m)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Mapping) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Expire removes the mappings whose lifetime has ended and returns how
// many.
func (t *Table) Expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.byID {
		if !now.Before(m.Expires) {
			t.remove(m, "expired")
			t.c.expired.Add(1)
			n++
		}
	}
	return n
}

// DropIPv4 removes every IPv4 mapping: the public address they were on
// is gone or changed. Their hosts learn it from the ANNOUNCE that
// follows and map again.
func (t *Table) DropIPv4() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.byID {
		if m.Internal.Addr().Is4() {
			t.remove(m, "external-address-changed")
			n++
		}
	}
	return n
}

// remove forgets m and undoes it in the backend; t.mu is held.
func (t *Table) remove(m *Mapping, why string) {
	delete(t.byInt, key{m.Proto, m.Internal})
	delete(t.byExt, key{m.Proto, m.External})
	delete(t.byID, m.ID)
	if t.hosts[m.Client]--; t.hosts[m.Client] <= 0 {
		delete(t.hosts, m.Client)
	}
	t.be.Remove(*m)
	t.c.released.Add(1)
	t.log.Info("port mapping released", "why", why, "via", m.Via, "client", m.Client, "proto", m.Proto,
		"internal", m.Internal, "external", m.External)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
