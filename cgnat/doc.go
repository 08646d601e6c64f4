// Package cgnat is the relay agent's side of its carrier-grade NAT for
// subscribers (issue 12; the datapath is xdp/bpf/cgnat.h, its model
// session/cgnat): relay.yaml's cgnat section, the grants of port blocks
// (a subscriber's first block when it is first seen, the next when the
// datapath reports a block nearly full), blocks returned after they stay
// empty for a grace time, the expiry sweep with the RFC timeouts, the
// block log (one JSON line per grant and release, fsync'd) and the
// lookup of who held a public address:port.
package cgnat
