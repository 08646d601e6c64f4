package session

import (
	"encoding/binary"
	"hash/fnv"
)

// Token is what binds a carrier at the relay to the flow the edge
// announced: a value computed from the flow's first packet on fields that
// no NAT rewrites, so another host behind the same CGNAT address cannot
// claim the carrier by sending to the relay port first. l4 is the packet
// from its L4 header on (carrier or flow: the fields used are the same).
//
//   - TCP: the sequence number (a SYN's ISN), which the carrier keeps.
//   - UDP: a hash of the payload after the 8-byte header.
//   - ICMP echo: a hash of the sequence number and the payload.
//
// ok is false when l4 is too short to hold those fields.
func Token(p Proto, l4 []byte) (token uint64, ok bool) {
	switch p {
	case TCP:
		if len(l4) < 20 {
			return 0, false
		}
		return uint64(binary.BigEndian.Uint32(l4[4:8])), true
	case UDP:
		if len(l4) < 8 {
			return 0, false
		}
		return hash(l4[8:]), true
	case ICMP, ICMPv6:
		if len(l4) < 8 {
			return 0, false
		}
		return hash(l4[6:]), true
	}
	return 0, false
}

func hash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// CarrierToken is the Token the relay will compute on the carrier of a
// flow of protocol flow whose first packet has the L4 bytes l4. A flow
// that rides a UDP carrier without being UDP is carried whole after the
// carrier's 8-byte header, so its token covers all of l4.
func CarrierToken(flow, carrier Proto, l4 []byte) (token uint64, ok bool) {
	if carrier == UDP && flow != UDP {
		return hash(l4), len(l4) > 0
	}
	return Token(flow, l4)
}
