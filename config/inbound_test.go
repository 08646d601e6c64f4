package config

import (
	"testing"
	"time"
)

// TestInboundLimits: zero fields take their defaults; values out of
// range are refused naming the field.
func TestInboundLimits(t *testing.T) {
	b, err := InboundLimits{}.Parse("inbound_limits")
	if err != nil || b != DefaultInbound() {
		t.Fatalf("empty: %+v %v", b, err)
	}
	b, err = InboundLimits{PerSite: 10, PerRemote: 2, PortShare: 100, UnansweredUDP: "10s"}.Parse("inbound_limits")
	if err != nil || b != (InboundBounds{PerSite: 10, PerRemote: 2, PortShare: 100, Unanswered: 10 * time.Second}) {
		t.Fatalf("set: %+v %v", b, err)
	}
	for _, l := range []InboundLimits{{PerSite: -1}, {PerRemote: 1 << 21}, {PortShare: 101}, {PortShare: -5}, {UnansweredUDP: "1s"}, {UnansweredUDP: "soon"}} {
		if _, err := l.Parse("inbound_limits"); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
}
