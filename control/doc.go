// Package control is unmap's control channel: QUIC with TLS 1.3 and
// mutual certificates (package control/pki), carrying the messages of
// package proto on one bidirectional stream per session.
//
// The relay side is a Server (Listen): it verifies each edge's client
// certificate against the deployment CA, takes the site id from it, asks
// the relay agent's Authorizer what the site is granted, answers Welcome,
// and then hands flow opens, replayed flows and closes to the agent's
// Handler in message order. It enforces the grant itself: a flow whose
// site endpoint is outside the site's prefix or public IPv4 never reaches
// the Handler. Session.Offer offers inbound flows to the edge.
//
// The edge side is a Client (NewClient, Run): it keeps one session up,
// with QUIC keepalives below a CGNAT's UDP timeout, Pings that let a
// restarted relay reset it at once, reconnects with jittered exponential
// backoff and TLS session resumption (no 0-RTT), and replays the edge's
// flow table, which is authoritative, after every Welcome. Its 8-byte
// connection IDs let QUIC follow it when the CGNAT rebinds its port.
//
// Every refusal and protocol error has a named counter (Counters) and a
// distinct error: proto.Code values for refusals and close codes,
// ErrHandshake for certificate failures.
package control
