// Package lab builds the unmap test network on one machine: a chain of
// network namespaces joined by veth pairs, from a site host behind a home
// router and someone else's carrier-grade NAT, across an Internet router,
// to the relay and to IPv4 and IPv6-only servers (see README.md for the
// diagram and the addressing plan).
//
// Everything is done through netlink (vishvananda/netlink, netns) and
// nftables (google/nftables) from Go: no ip, nft or ip netns exec binary is
// needed. Nothing is ever added to the root namespace: each veth is created
// by a netlink handle bound to one lab namespace with its peer placed
// straight into another.
//
// A lab is named by a random prefix (unmap-<6 hex>-<role>), so parallel tests
// do not collide; Close always tears it down (NewForTest, called by
// tests through test/labtest.New, does it in t.Cleanup), Down removes labs left up on purpose or by a process that
// died, and building a lab reaps the latter.
//
// Helpers run Go code, commands, servers, pings and packet captures inside a
// namespace (NS.Do, NS.Start, NS.StartProcess, NS.Listen, NS.StartEcho,
// NS.Ping, NS.Capture). The tour (BaselineChecks, RunTour, WriteTable) is
// the list of end-to-end checks that `unmap lab` prints as a table; later
// work appends its own checks to it.
package lab
