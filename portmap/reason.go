package portmap

import "sync/atomic"

// Reason names why a request was refused; OK is a grant. Each protocol
// turns a Reason into its own result code (pcp.go, natpmp.go, upnp.go).
type Reason uint8

// Reasons a request is refused; each is counted.
const (
	OK                    Reason = iota
	Malformed                    // a request that does not parse
	Oversize                     // a request above the protocol's bound
	UnsupportedVersion           // a PCP or NAT-PMP version not served
	UnsupportedOpcode            // an opcode or SOAP action not served
	UnsupportedOption            // a mandatory PCP option not served
	MalformedOption              // a PCP option that does not parse
	UnsupportedProto             // not TCP or UDP
	AddressMismatch              // PCP client address is not the packet's source
	NotSelf                      // a mapping for another host, third_party off
	NotAllowed                   // an internal address outside the allowed ranges
	HostQuota                    // the host holds per_host mappings
	SiteQuota                    // the site holds per_site mappings
	PortUnavailable              // the exact port asked for is taken
	NoFreePort                   // no port free near the one asked for
	NoExternal                   // no public IPv4 now (no session, none granted)
	CannotProvideExternal        // PCP: the suggested external address is not ours
	NotOwner                     // the mapping is another client's (or PCP nonce's)
	NotFound                     // UPnP: no such entry
	TooManyFilters               // more PCP FILTERs than a mapping keeps
	Disabled                     // the protocol is switched off
	RateLimited                  // the source sent more than its share of requests
	IPv4Only                     // an IPv6 host asking a backend that maps IPv4 only (PerClient: the relay's CGNAT, whose NAT64 subscribers get no mappings)
	numReasons
)

var reasonNames = [numReasons]string{
	"ok", "malformed", "oversize", "unsupported-version", "unsupported-opcode",
	"unsupported-option", "malformed-option", "unsupported-proto", "address-mismatch",
	"not-self", "not-allowed", "host-quota", "site-quota", "port-unavailable",
	"no-free-port", "no-external", "cannot-provide-external", "not-owner", "not-found",
	"too-many-filters", "disabled", "rate-limited", "ipv4-only",
}

func (r Reason) String() string {
	if r >= numReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// RefusalNames lists the refusal reasons' names (every Reason but OK),
// as Counts names them after "refused-".
func RefusalNames() []string {
	out := make([]string, 0, numReasons-1)
	for r := Reason(1); r < numReasons; r++ {
		out = append(out, r.String())
	}
	return out
}

// counters are the table's counts: refusals by reason, and events.
type counters struct {
	refused  [numReasons]atomic.Uint64
	requests [ViaUPnP + 1]atomic.Uint64
	granted  atomic.Uint64
	released atomic.Uint64
	expired  atomic.Uint64
	restored atomic.Uint64
}

// Refused counts a refusal that never reached the table (a request that
// did not parse, a switched-off protocol).
func (t *Table) Refused(r Reason) {
	if r != OK && r < numReasons {
		t.c.refused[r].Add(1)
	}
}

// Request counts one request served by via.
func (t *Table) Request(via Via) {
	if via <= ViaUPnP {
		t.c.requests[via].Add(1)
	}
}

// Counts is the table's counters by name: requests by protocol, grants,
// releases and expiries, and refusals by reason (refused-<reason>).
func (t *Table) Counts() map[string]uint64 {
	m := map[string]uint64{
		"requests-pcp":     t.c.requests[ViaPCP].Load(),
		"requests-nat-pmp": t.c.requests[ViaNATPMP].Load(),
		"requests-upnp":    t.c.requests[ViaUPnP].Load(),
		"granted":          t.c.granted.Load(),
		"released":         t.c.released.Load(),
		"expired":          t.c.expired.Load(),
		"restored":         t.c.restored.Load(),
	}
	for r := Reason(1); r < numReasons; r++ {
		m["refused-"+r.String()] = t.c.refused[r].Load()
	}
	return m
}
