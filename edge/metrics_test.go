package edge

import "testing"

// TestCountedNamesDeclared: the values the edge counts by name (a reason
// passed up from the openings and the inbound quota, a handshake
// segment's counter) are declared counters; an undeclared one would
// count as a bug (and panics in tests: metrics.Counters.IncName).
func TestCountedNamesDeclared(t *testing.T) {
	for _, n := range []string{"opening-full", "held-overflow", "inbound-flow-exists", "inbound-site-quota",
		"inbound-remote-quota", "handshake-ack-sent-again", "handshake-carrier-syn-sent"} {
		if _, ok := edgeMetrics.Lookup(n); !ok {
			t.Errorf("%q is counted but not declared", n)
		}
	}
}
