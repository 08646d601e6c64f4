// Package security holds end-to-end tests (see test/e2e): what an attacker
// cannot do (hijack a carrier, spoof a site's or a martian source, flood
// the relay from many sources) and the agents' privileges (dropped after
// set-up, documented start-up sets, a non-root user).
package security
