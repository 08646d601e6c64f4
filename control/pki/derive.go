package pki

import (
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// Purposes of DeriveSecret: each gives an independent secret.
const (
	PurposeStatelessReset = "quic stateless reset"
	PurposeSessionTicket  = "tls session ticket"
)

// DeriveSecret derives a 32-byte secret for purpose from an agent's
// private key with HKDF-SHA256. The relay derives its QUIC stateless
// reset key and its TLS session ticket key this way, so both are the same
// after a restart (a restarted relay resets the edges' old connections at
// once, and edges resume their TLS sessions) without a secret file of
// their own to keep, and relays that share a key pair share them. HKDF is
// one-way: a secret reveals nothing of the key.
func DeriveSecret(key *ecdsa.PrivateKey, purpose string) ([32]byte, error) {
	var out [32]byte
	d, err := key.Bytes()
	if err != nil {
		return out, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	b, err := hkdf.Key(sha256.New, d, []byte("unmap"), purpose, len(out))
	if err != nil {
		return out, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	copy(out[:], b)
	return out, nil
}
