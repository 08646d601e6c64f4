package session

import (
	"crypto/rand"
	"encoding/binary"
)

// What binds a carrier at the relay to the flow the edge announced on
// the control channel (proto.BindToken): something only that edge
// knows, in a field no NAT rewrites, so another host behind the same
// CGNAT address cannot claim the carrier by sending to its relay port
// first.
//
//   - A TCP carrier: the sequence number of its SYN, the ISN the host's
//     kernel chose at random (TCPToken), which the carrier keeps.
//   - Any other carrier: a secret the edge draws for the flow
//     (NewSecret) and proves on the carrier with a token keepalive
//     (xlat.TokenKeepalive): never derived from what the flow carries,
//     which anyone may predict.

// TCPToken is the bind token of a TCP carrier whose first segment has the
// L4 bytes l4: its sequence number. ok is false when l4 is too short to
// hold a TCP header.
func TCPToken(l4 []byte) (token uint64, ok bool) {
	if len(l4) < 20 {
		return 0, false
	}
	return uint64(binary.BigEndian.Uint32(l4[4:8])), true
}

// NewSecret is a fresh bind secret: 64 random bits, never 0 (a zero
// token reads as "none" in logs and replays).
func NewSecret() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}
