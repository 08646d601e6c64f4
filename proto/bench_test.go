package proto

import (
	"bytes"
	"testing"

	"github.com/unmap-dev/unmap/session"
)

// Encoding costs, per message. The baseline is a plain copy of the same
// number of bytes, so the ratio shows what the field checks cost.

func BenchmarkFlowOpen(b *testing.B) {
	m := &FlowOpen{ID: 1, Flow: flow6, CarrierProto: session.TCP, EdgePort: 61000, LifetimeSec: 7440, Token: 9}
	buf := make([]byte, 0, 128)
	body := m.Append(nil)
	b.Run("copy-baseline", func(b *testing.B) {
		dst := make([]byte, len(body))
		for range b.N {
			copy(dst, body)
		}
	})
	b.Run("append", func(b *testing.B) {
		for range b.N {
			buf = m.Append(buf[:0])
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := Parse(TypeFlowOpen, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkReplayBatch(b *testing.B) {
	m := &Replay{Entries: make([]ReplayEntry, MaxReplayEntries)}
	for i := range m.Entries {
		m.Entries[i] = ReplayEntry{Flow: flow6, CarrierProto: session.TCP, EdgePort: uint16(i), Relay: relayR, Public: publicC, LifetimeSec: 7440}
	}
	var frame bytes.Buffer
	if err := WriteMessage(&frame, m); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(frame.Len()))
	b.ReportAllocs()
	for range b.N {
		if _, err := ReadMessage(bytes.NewReader(frame.Bytes()), 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*MaxReplayEntries), "ns/entry")
}
