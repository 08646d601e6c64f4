// Package inbound holds end-to-end tests (see test/e2e): flows from the
// Internet to a site: UDP and TCP, the TCP handshake with losses, the
// bounds on what remotes can make the agents hold, a flood of refused
// flows.
package inbound
