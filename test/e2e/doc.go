// Package e2e holds the end-to-end tests: the unmap binary's agents run as
// processes inside the lab's network namespaces, with real kernels, real
// sockets and a real NAT (nftables in the cgn namespace) between them.
package e2e
