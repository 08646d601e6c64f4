// Package slowpath is what both agents do with their XDP datapath outside
// XDP: load it with its maps pinned and attach it, read the packets it
// hands over (misses), translate the packets held while a flow opened
// with the flow's new entries and send them on through raw sockets,
// read the flows' activity from the datapath's counters, and rebuild
// flows from the entries a previous agent left pinned. The edge and the
// relay keep only what is theirs: what a miss means, and which flows
// they own.
package slowpath
