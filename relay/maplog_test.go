package relay

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// TestMapFailureLogRateLimited: with the flow table full, every carrier
// packet that tries to bind is refused by the datapath. Each refusal is
// counted, but the Error line is written once per interval, saying how
// many refusals it did not log, not once per packet.
func TestMapFailureLogRateLimited(t *testing.T) {
	c := replayCarriers(t)
	c.dp = fullDatapath(t)
	var buf bytes.Buffer
	c.log = slog.New(slog.NewTextHandler(&buf, nil))
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now = clk.now

	p := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20001)
	k := &carrier{site: "home", public: p.c.Public}
	k.lease.Key.Relay, k.lease.Key.Public, k.lease.Key.Proto, k.lease.Port = pinRelay, pinPublic, session.UDP, 20001
	const packets = 500
	c.flows.mu.Lock()
	for range packets {
		if c.mapCarrier(p.f, k) {
			t.Fatal("a full table took the flow")
		}
		clk.add(time.Millisecond)
	}
	c.flows.mu.Unlock()
	if got := c.m.Snapshot()["map-failed"]; got != packets {
		t.Errorf("map-failed = %d, want %d", got, packets)
	}
	if n := strings.Count(buf.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines for %d refusals in %v, want 1:\n%s", n, packets, packets*time.Millisecond, buf.String())
	}
	clk.add(mapLogEvery)
	c.flows.mu.Lock()
	c.mapCarrier(p.f, k)
	c.flows.mu.Unlock()
	if n := strings.Count(buf.String(), "level=ERROR"); n != 2 || !strings.Contains(buf.String(), "refused_since_last_line=499") {
		t.Errorf("after the interval: %d error lines, want 2, the second saying 499 not logged:\n%s", n, buf.String())
	}
}
