package proto

import (
	"encoding/binary"

	"github.com/unmap-dev/unmap/session"
)

// Replay body: flags(1) count(2) entries(88 each). Entry: flow(37)
// carrier_proto(1) edge_port(2) relay(18) public(18) lifetime(4) token(8).

const replayEntryLen = flowLen + 1 + 2 + addrPortLen + addrPortLen + 4 + 8

const replayLast = 1 << 0

func (m *Replay) Length() int { return 1 + 2 + len(m.Entries)*replayEntryLen }

func (m *Replay) Append(b []byte) []byte {
	var flags uint8
	if m.Last {
		flags |= replayLast
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		b = appendFlow(b, e.Flow)
		b = append(b, uint8(e.CarrierProto))
		b = binary.BigEndian.AppendUint16(b, e.EdgePort)
		b = appendAddrPort(b, e.Relay)
		b = appendAddrPort(b, e.Public)
		b = binary.BigEndian.AppendUint32(b, e.LifetimeSec)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Token))
	}
	return b
}

func parseReplay(r *reader) (*Replay, error) {
	m := &Replay{Last: r.u8("flags")&replayLast != 0}
	n := r.count("entries", 2, MaxReplayEntries, replayEntryLen)
	if n > 0 {
		m.Entries = make([]ReplayEntry, n)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		e.Flow = r.flow("entries.flow")
		e.CarrierProto = session.Proto(r.u8("entries.carrier_proto"))
		e.EdgePort = r.u16("entries.edge_port")
		e.Relay = r.addrPort("entries.relay")
		e.Public = r.addrPort("entries.public")
		e.LifetimeSec = r.u32("entries.lifetime")
		e.Token = BindToken(r.u64("entries.token"))
		r.carrierProto(e.CarrierProto)
		if r.err == nil && !e.Relay.Addr().Is4() {
			r.fail("entries.relay", ErrInvalid)
		}
		// The CGNAT's side of a carrier is IPv4, as in CarrierBound; none
		// when the carrier never bound.
		if r.err == nil && e.Public.IsValid() && !e.Public.Addr().Is4() {
			r.fail("entries.public", ErrInvalid)
		}
	}
	return m, r.done()
}

// ReplayDone body: accepted(4) refused(4).

func (m *ReplayDone) Length() int { return 8 }

func (m *ReplayDone) Append(b []byte) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(b, m.Accepted), m.Refused)
}

func parseReplayDone(r *reader) (*ReplayDone, error) {
	m := &ReplayDone{Accepted: r.u32("accepted"), Refused: r.u32("refused")}
	return m, r.done()
}
