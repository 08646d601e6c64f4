package proto

import (
	"encoding/binary"

	"github.com/unmap-dev/unmap/session"
)

// FlowOpen body: id(4) flags(1) flow(37) carrier_proto(1) edge_port(2)
// relay(18) lifetime(4) token(8).

func (m *FlowOpen) Length() int { return 4 + 1 + flowLen + 1 + 2 + addrPortLen + 4 + 8 }

func (m *FlowOpen) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.ID)
	b = append(b, uint8(m.Flags))
	b = appendFlow(b, m.Flow)
	b = append(b, uint8(m.CarrierProto))
	b = binary.BigEndian.AppendUint16(b, m.EdgePort)
	b = appendAddrPort(b, m.Relay)
	b = binary.BigEndian.AppendUint32(b, m.LifetimeSec)
	return binary.BigEndian.AppendUint64(b, uint64(m.Token))
}

func parseFlowOpen(r *reader) (*FlowOpen, error) {
	m := &FlowOpen{
		ID:           r.u32("id"),
		Flags:        FlowFlags(r.u8("flags")),
		Flow:         r.flow("flow"),
		CarrierProto: session.Proto(r.u8("carrier_proto")),
		EdgePort:     r.u16("edge_port"),
		Relay:        r.addrPort("relay"),
		LifetimeSec:  r.u32("lifetime"),
		Token:        BindToken(r.u64("token")),
	}
	r.carrierProto(m.CarrierProto)
	if r.err == nil && m.Relay.IsValid() && !m.Relay.Addr().Is4() {
		r.fail("relay", ErrInvalid)
	}
	return m, r.done()
}

// carrierProto checks that a carrier is one of the three kinds a CGNAT
// passes: TCP, UDP or ICMP echo.
func (r *reader) carrierProto(p session.Proto) {
	if r.err == nil && p != session.TCP && p != session.UDP && p != session.ICMP {
		r.fail("carrier_proto", ErrInvalid)
	}
}

// FlowGrant body: id(4) result(2) relay(18) lifetime(4).

func (m *FlowGrant) Length() int { return 4 + 2 + addrPortLen + 4 }

func (m *FlowGrant) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.ID)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Result))
	b = appendAddrPort(b, m.Relay)
	return binary.BigEndian.AppendUint32(b, m.LifetimeSec)
}

func parseFlowGrant(r *reader) (*FlowGrant, error) {
	m := &FlowGrant{
		ID:          r.u32("id"),
		Result:      Code(r.u16("result")),
		Relay:       r.addrPort("relay"),
		LifetimeSec: r.u32("lifetime"),
	}
	if r.err == nil && m.Result == CodeOK && !m.Relay.Addr().Is4() {
		r.fail("relay", ErrInvalid) // a grant needs an IPv4 carrier endpoint
	}
	return m, r.done()
}

// FlowOffer body: id(4) flow(37) carrier_proto(1) relay(18) lifetime(4)
// syn_len(1) syn(syn_len).

func (m *FlowOffer) Length() int { return 4 + flowLen + 1 + addrPortLen + 4 + 1 + len(m.SYN) }

func (m *FlowOffer) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.ID)
	b = appendFlow(b, m.Flow)
	b = append(b, uint8(m.CarrierProto))
	b = appendAddrPort(b, m.Relay)
	b = binary.BigEndian.AppendUint32(b, m.LifetimeSec)
	b = append(b, uint8(len(m.SYN)))
	return append(b, m.SYN...)
}

func parseFlowOffer(r *reader) (*FlowOffer, error) {
	m := &FlowOffer{
		ID:           r.u32("id"),
		Flow:         r.flow("flow"),
		CarrierProto: session.Proto(r.u8("carrier_proto")),
		Relay:        r.addrPort("relay"),
		LifetimeSec:  r.u32("lifetime"),
	}
	r.carrierProto(m.CarrierProto)
	n := int(r.u8("syn"))
	if r.err == nil && n != 0 && (n < MinSYNLen || n > MaxSYNLen || n%4 != 0 || m.Flow.Proto != session.TCP) {
		r.fail("syn", ErrInvalid)
	}
	if syn := r.take("syn", n); n > 0 && syn != nil {
		m.SYN = append([]byte(nil), syn...)
		// The data offset must say what the length says, or the edge
		// would replay a header it misreads.
		if int(syn[12]>>4)*4 != n {
			r.fail("syn", ErrInvalid)
		}
	}
	if r.err == nil && !m.Relay.Addr().Is4() {
		r.fail("relay", ErrInvalid)
	}
	return m, r.done()
}

// OfferReply body: id(4) result(2) edge_port(2) token(8).

func (m *OfferReply) Length() int { return 4 + 2 + 2 + 8 }

func (m *OfferReply) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.ID)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Result))
	b = binary.BigEndian.AppendUint16(b, m.EdgePort)
	return binary.BigEndian.AppendUint64(b, uint64(m.Token))
}

func parseOfferReply(r *reader) (*OfferReply, error) {
	m := &OfferReply{
		ID:       r.u32("id"),
		Result:   Code(r.u16("result")),
		EdgePort: r.u16("edge_port"),
		Token:    BindToken(r.u64("token")),
	}
	return m, r.done()
}

// CarrierBound body: flow(37) public(18) generation(2).

func (m *CarrierBound) Length() int { return flowLen + addrPortLen + 2 }

func (m *CarrierBound) Append(b []byte) []byte {
	b = appendFlow(b, m.Flow)
	b = appendAddrPort(b, m.Public)
	return binary.BigEndian.AppendUint16(b, m.Generation)
}

func parseCarrierBound(r *reader) (*CarrierBound, error) {
	m := &CarrierBound{
		Flow:       r.flow("flow"),
		Public:     r.addrPort("public"),
		Generation: r.u16("generation"),
	}
	if r.err == nil && !m.Public.Addr().Is4() {
		r.fail("public", ErrInvalid)
	}
	return m, r.done()
}

// CarrierMoved body: flow(37) public(18).

func (m *CarrierMoved) Length() int { return flowLen + addrPortLen }

func (m *CarrierMoved) Append(b []byte) []byte {
	return appendAddrPort(appendFlow(b, m.Flow), m.Public)
}

func parseCarrierMoved(r *reader) (*CarrierMoved, error) {
	m := &CarrierMoved{Flow: r.flow("flow"), Public: r.addrPort("public")}
	if r.err == nil && !m.Public.Addr().Is4() {
		r.fail("public", ErrInvalid)
	}
	return m, r.done()
}

// FlowClose body: flow(37) reason(2).

func (m *FlowClose) Length() int { return flowLen + 2 }

func (m *FlowClose) Append(b []byte) []byte {
	return binary.BigEndian.AppendUint16(appendFlow(b, m.Flow), uint16(m.Reason))
}

func parseFlowClose(r *reader) (*FlowClose, error) {
	m := &FlowClose{Flow: r.flow("flow"), Reason: Code(r.u16("reason"))}
	return m, r.done()
}
