// Package portmap holds end-to-end tests (see test/e2e) of port mapping on request
// at the edge: LAN hosts map ports with real PCP, NAT-PMP and UPnP IGD
// clients, and srv4/srv6 reach them through the mappings.
package portmap
