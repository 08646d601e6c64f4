// Package pki makes and checks the certificates of unmap's control
// channel: one private CA per deployment, a server certificate for each
// relay, and a client certificate for each edge that names its site.
//
// # Keys
//
// Every key is ECDSA P-256. TLS 1.3 makes ecdsa_secp256r1_sha256 mandatory
// to implement (RFC 8446 §9.1) while Ed25519 is optional, so P-256 is the
// one choice every peer, HSM and inspection tool (openssl, curl, Wireshark)
// accepts; crypto/tls and quic-go (which uses crypto/tls) handle both, and
// Go's P-256 is constant-time assembly on amd64 and arm64. Keys are stored
// as PKCS #8 in PEM, mode 0600.
//
// # Site identity
//
// An edge certificate carries its site id as a URI SAN, unmap://site/<id>
// (the subject CN repeats it for people reading the certificate, but is
// never trusted: CNs are legacy). [SiteID] extracts and validates it; a
// site id is a DNS label: lowercase letters, digits and inner hyphens, 1 to
// 63 characters.
//
// # TLS
//
// [ServerConfig] and [ClientConfig] build TLS 1.3-only configurations for
// the relay and the edge. The server verifies client certificates itself
// so it can name why one was refused ([Reason]) and count it.
package pki
