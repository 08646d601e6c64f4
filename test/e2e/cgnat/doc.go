// Package cgnat holds end-to-end tests (see test/e2e) of the relay's
// carrier-grade NAT for its own subscribers (issue 12): a host in the
// lab's sub namespace reaching srv4 through the relay's pool, and the
// block log the relay writes of it.
package cgnat
