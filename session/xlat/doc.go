// Package xlat is unmap's reference translator: the datapath's rules
// written as plain Go on byte slices. It is the spec the XDP programs in
// package xdp are tested against: for every packet and table state, the
// XDP verdict, reason and output bytes must equal what Process returns.
//
// It translates a flow's packet to its carrier and back (IPv6 <-> IPv4 per
// RFC 7915, with incremental checksums per RFC 1624), rewrites IPv4 flows
// (NAPT), wraps other IPv6 payloads in a UDP carrier and unwraps them,
// and translates ICMP errors with their embedded packet: those from the far
// end of what they report as from the flow's far end, those from a router
// on the carrier path from 64:ff9b::<router>; it hands the agent what a
// router must answer or relay itself (ReasonICMPErrToAgent,
// ReasonTTLToAgent; TimeExceeded4/6 build the answers).
// Keep it simple and obviously right rather than fast.
//
// Tables.Lookup is an exact match on Key. How the XDP side stores keys
// (carrier keys in an array slot by local port, other IPv4 keys and IPv6
// keys in two hashes) is a matter of speed that does not change which
// entry a packet gets, so the model has one map.
package xlat
