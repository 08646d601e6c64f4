// Package carrier holds end-to-end tests (see test/e2e): binding carriers
// through the CGN by their proofs and tokens, with the first packet lost,
// a probe expiring, a CGN that moves the carrier, and an idle UDP flow
// kept.
package carrier
