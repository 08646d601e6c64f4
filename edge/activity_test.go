package edge

import (
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/slowpath"
)

// TestActiveFlowsDoNotExpire proves a flow the datapath keeps forwarding
// stays in the table past its idle timeout, and an idle one goes.
func TestActiveFlowsDoNotExpire(t *testing.T) {
	c := Config{Site: "home", Relay: "relay:443", LAN: "lan", WAN: "wan", TLS: confTLS("x")}
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAgent(s, netip.MustParseAddr("100.64.0.2"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	if a.flows, err = flows.New(flows.Options{Timeouts: flows.Timeouts(s.Timers), Now: clock}); err != nil {
		t.Fatal(err)
	}
	busy := session.Flow{Proto: session.UDP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:1000"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	idle := busy
	idle.Site = netip.MustParseAddrPort("[2001:db8:5::2]:1001")
	// done is a TCP connection that ends (FIN each way) after 5 minutes:
	// the transitory timeout, not the established one, applies then.
	done := session.Flow{Proto: session.TCP, Site: netip.MustParseAddrPort("[2001:db8:5::2]:1002"), Remote: netip.MustParseAddrPort("[2001:db8:6::2]:443")}
	packets := map[session.Flow]uint64{}
	closed := map[session.Flow]bool{}
	a.activity = func(f session.Flow, _ session.Carrier) (slowpath.Activity, bool) {
		return slowpath.Activity{Out: packets[f], Closed: closed[f]}, true
	}
	for _, f := range []session.Flow{busy, idle, done} {
		if err := a.flows.Add(f, session.Carrier{Proto: f.Proto}, flows.StateOpen); err != nil {
			t.Fatal(err)
		}
	}
	a.touchActive() // first look: nothing moved yet
	// Twenty minutes of traffic on busy only, looked at every 20 s.
	for i := range 60 {
		advance(slowpath.ActivityEvery)
		packets[busy] += 10
		if i < 15 {
			packets[done] += 10
		} else {
			closed[done] = true
		}
		a.touchActive()
	}
	gone := a.flows.Expire(nil, 0)
	if len(gone) != 2 || gone[0].Flow == busy || gone[1].Flow == busy {
		t.Fatalf("expired %v, want the idle flow and the ended TCP connection", gone)
	}
	if a.Counts()["tcp-closed"] != 1 {
		t.Errorf("tcp-closed counted %d, want 1", a.Counts()["tcp-closed"])
	}
	if _, ok := a.flows.Get(busy); !ok {
		t.Error("the busy flow expired")
	}
}
