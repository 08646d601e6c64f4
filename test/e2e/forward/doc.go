// Package forward holds end-to-end tests (see test/e2e): the paths through
// the agents: the session through the CGN, outbound IPv6 and the site's
// IPv4, ICMP (traceroute, path MTU), carriers passed to the kernel before
// a neighbour entry, and no routing loop for what the relay passes.
package forward
