package edge

import (
	"testing"

	"github.com/unmap-dev/unmap/proto"
)

// TestRelayStatus: the relay's Pong counters are shown by name; an id
// this edge does not know keeps its number.
func TestRelayStatus(t *testing.T) {
	got := relayStatus([]proto.Counter{{ID: proto.CounterFlows, Value: 3}, {ID: proto.CounterRefusals, Value: 1}, {ID: 99, Value: 7}})
	want := map[string]uint64{"flows": 3, "refused": 1, "counter_99": 7}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}
