package slowpath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
)

// TestPoller: a flow whose counters moved since the last Poll is marked
// seen; one that did not, or a new one that counted nothing, is not; a
// flow with no entries is skipped and given to nobody; a flow gone from
// the table is forgotten, so one added again under the same name starts
// afresh.
func TestPoller(t *testing.T) {
	now := time.Unix(1e9, 0)
	tb, err := flows.New(flows.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	flow := func(port uint16) session.Flow {
		return session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), port),
			Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	}
	busy, idle, fresh, none := flow(1), flow(2), flow(3), flow(4)
	counts := map[session.Flow]Activity{busy: {Out: 1}, idle: {Back: 5}}
	p := Poller{Table: tb, Read: func(e flows.Entry) (Activity, bool) {
		if e.Flow == none {
			return Activity{}, false
		}
		return counts[e.Flow], true
	}}
	for _, f := range []session.Flow{busy, idle, fresh, none} {
		if err := tb.Add(f, session.Carrier{Proto: session.UDP}, flows.StateOpen); err != nil {
			t.Fatal(err)
		}
	}
	lastSeen := func(f session.Flow) time.Time { e, _ := tb.Get(f); return e.LastSeen }
	start := now
	now = now.Add(time.Minute)
	var given []session.Flow
	p.Poll(func(e flows.Entry, _ Activity) { given = append(given, e.Flow) })
	// First look: busy and idle counted packets, fresh none.
	if !lastSeen(busy).Equal(now) || !lastSeen(idle).Equal(now) || !lastSeen(fresh).Equal(start) || !lastSeen(none).Equal(start) {
		t.Fatalf("first poll: seen busy %v idle %v fresh %v none %v", lastSeen(busy), lastSeen(idle), lastSeen(fresh), lastSeen(none))
	}
	if len(given) != 3 {
		t.Errorf("each given %d flows, want the 3 with entries", len(given))
	}
	now = now.Add(time.Minute)
	counts[busy] = Activity{Out: 1, Back: 1}
	p.Poll(nil)
	if !lastSeen(busy).Equal(now) || lastSeen(idle).Equal(now) {
		t.Fatalf("second poll: busy seen %v, idle seen %v; want only busy now", lastSeen(busy), lastSeen(idle))
	}
	// idle leaves and comes back with the same count: a new flow that
	// counted packets, seen.
	if _, err := tb.Delete(idle); err != nil {
		t.Fatal(err)
	}
	p.Poll(nil)
	if _, kept := p.seen[idle]; kept {
		t.Error("the poller kept the count of a flow gone from the table")
	}
	if err := tb.Add(idle, session.Carrier{Proto: session.UDP}, flows.StateOpen); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	p.Poll(nil)
	if !lastSeen(idle).Equal(now) {
		t.Errorf("the flow added again with packets counted not seen: %v", lastSeen(idle))
	}
}
