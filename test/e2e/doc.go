// Package e2e holds what the end-to-end tests share: unmap deployed in
// the lab (Deploy, Up), its agents' status read while they run (Section),
// and the traffic the tests send through it (echo servers, streams,
// exchanges). The tests themselves are in its subpackages, one per theme,
// so that each package's tests end well within go test's default
// ten-minute timeout: carrier (binding and keeping carriers), forward
// (the paths through the agents), inbound (flows from the Internet to a
// site), security (what an attacker cannot do, and the agents'
// privileges), ops (restarts, outages, metrics, warnings) and cgnat
// (the relay's CGNAT for its own subscribers). In each,
// the unmap binary's agents run as processes inside the lab's network
// namespaces, with real kernels, real sockets and a real NAT (nftables in
// the cgn namespace) between them.
package e2e
