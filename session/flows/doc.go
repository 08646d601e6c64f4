// Package flows is the edge's flow table: every flow of the site with
// its carrier, its state and when it was last seen, expiring after the
// RFC idle timeouts.
//
// The edge's table is authoritative: after the control channel
// reconnects (or the relay restarts) the agent replays [Table.Snapshot]
// to the relay. Packets are forwarded in XDP without passing through
// this table; the agent copies last-seen times from the XDP maps with
// [Table.TouchAt] and asks [Table.Expire] for the flows whose time is up.
//
// Expiry is a min-heap on each flow's deadline, with lazy extension: a
// touch only stores the new last-seen time (O(1)); when the heap's top
// comes due, its real deadline is recomputed and, if the flow was seen
// since, pushed back down (O(log n)). A sweep therefore costs
// O(k log n) for the k flows that come due, never a scan of the table,
// and [Table.NextDue] tells the sweeper how long it may sleep.
package flows
