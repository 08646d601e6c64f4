package proto

import "encoding/binary"

// Ping and Pong body: seq(4) count(1) counters(10 each: id(2) value(8)).

const counterLen = 2 + 8

func countersLength(c []Counter) int { return 1 + len(c)*counterLen }

func appendCounters(b []byte, c []Counter) []byte {
	b = append(b, uint8(len(c)))
	for _, v := range c {
		b = binary.BigEndian.AppendUint16(b, uint16(v.ID))
		b = binary.BigEndian.AppendUint64(b, v.Value)
	}
	return b
}

func (r *reader) counters() []Counter {
	n := r.count("counters", 1, MaxCounters, counterLen)
	if n == 0 {
		return nil
	}
	c := make([]Counter, n)
	for i := range c {
		c[i] = Counter{ID: CounterID(r.u16("counters")), Value: r.u64("counters")}
	}
	return c
}

func (m *Ping) Length() int { return 4 + countersLength(m.Counters) }

func (m *Ping) Append(b []byte) []byte {
	return appendCounters(binary.BigEndian.AppendUint32(b, m.Seq), m.Counters)
}

func parsePing(r *reader) (*Ping, error) {
	m := &Ping{Seq: r.u32("seq"), Counters: r.counters()}
	return m, r.done()
}

func (m *Pong) Length() int { return 4 + countersLength(m.Counters) }

func (m *Pong) Append(b []byte) []byte {
	return appendCounters(binary.BigEndian.AppendUint32(b, m.Seq), m.Counters)
}

func parsePong(r *reader) (*Pong, error) {
	m := &Pong{Seq: r.u32("seq"), Counters: r.counters()}
	return m, r.done()
}

// Goodbye body: code(2) retry_ms(4) reason(1+n).

func (m *Goodbye) Length() int { return 2 + 4 + 1 + len(m.Reason) }

func (m *Goodbye) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(m.Code))
	b = binary.BigEndian.AppendUint32(b, m.RetryMS)
	b = append(b, uint8(len(m.Reason)))
	return append(b, m.Reason...)
}

func parseGoodbye(r *reader) (*Goodbye, error) {
	m := &Goodbye{Code: Code(r.u16("code")), RetryMS: r.u32("retry_ms"), Reason: r.str("reason", MaxReasonLen)}
	return m, r.done()
}
