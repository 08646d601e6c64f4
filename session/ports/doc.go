// Package ports hands out carrier ports: R on the relay's addresses and
// E on the edge's WAN address.
//
// # Relay ports R
//
// The relay sees a carrier as CGNAT-public addr:C → relay addr:R, and
// learns C only from the carrier's first packet. Before that, the pair
// (public addr, R) must already name one flow, so R is unique per
// (relay addr, public addr, protocol) and nothing more: the same R serves
// other sites behind other CGNAT addresses at the same time. [Relay]
// keeps one [Pool] per such key, created on first use and dropped (by
// [Relay.Trim]) once idle and past quarantine, so memory follows the
// ports in use, not the number of CGNAT addresses ever seen.
//
// # Edge ports E
//
// The edge picks E before the relay picks R, so E is unique per
// (protocol) on the WAN address; [Edge] keeps one [Pool] per protocol.
// E must not collide with the edge's own sockets, whose replies the XDP
// program would otherwise take. The agent reserves the carrier range in
// the kernel (net.ipv4.ip_local_reserved_ports, see [Reserve]): the
// kernel then never picks those ports for an automatic bind, which covers
// the control channel's QUIC socket and every other connect() or bind(0)
// on the box, at no cost per grant. The alternative, skipping ports bound
// locally, needs a sock_diag query per grant and still races with a bind
// that happens after the check. A daemon that binds an explicit port in
// the range is a configuration error the agent reports at start.
//
// # Order of reuse
//
// A [Pool] hands out released ports oldest first once they have rested
// for the quarantine, else ports it has never handed out (walking the
// range from a random offset), and never a port released less than the
// quarantine ago: a CGNAT may still hold a mapping for a port just
// freed, and reusing it at once would deliver the old flow's late packets
// to the new one. Grant and release are O(1) (amortised where a claim
// after a restart makes the cursor skip a port once).
package ports
