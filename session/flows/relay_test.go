package flows

import (
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// TestGraceAndLifetime: what the relay asks of the table. Grace is added
// to every timeout; an open flow's lifetime, if longer than its timeout,
// is how long it may idle, and no longer applies once it is transitory;
// Value and Put keep the relay's books with the flow; AddEntry keeps the
// last-seen time it is given (a flow put back as it was).
func TestGraceAndLifetime(t *testing.T) {
	clk := newClock()
	tb := newTable(t, clk, Options{Timeouts: Timeouts{UDP: 2 * time.Minute, TCPTransitory: 4 * time.Minute}, Grace: time.Minute})
	plain, long, ended := flow(session.UDP, 1), flow(session.UDP, 2), flow(session.TCP, 3)
	books := new(int)
	for _, x := range []Entry{
		{Flow: plain, Carrier: carrier(session.UDP, 1), State: StateOpen, Value: books},
		{Flow: long, Carrier: carrier(session.UDP, 2), State: StateOpen, Lifetime: 10 * time.Minute},
		{Flow: ended, Carrier: carrier(session.TCP, 3), State: StateOpen, Lifetime: 124 * time.Minute},
	} {
		if err := tb.AddEntry(x); err != nil {
			t.Fatal(err)
		}
	}
	if v, ok := tb.Value(plain); !ok || v != books {
		t.Fatalf("Value %v %v, want the books added", v, ok)
	}
	if err := tb.Update(ended, carrier(session.TCP, 3), StateTransitory); err != nil {
		t.Fatal(err)
	}
	expired := func(after time.Duration) []session.Flow {
		clk.add(after)
		var out []session.Flow
		for _, e := range tb.Expire(nil, 0) {
			out = append(out, e.Flow)
		}
		return out
	}
	if got := expired(3*time.Minute - time.Second); len(got) != 0 {
		t.Fatalf("at 2m59 (2m + 1m grace not up): expired %v", got)
	}
	if got := expired(time.Second); len(got) != 1 || got[0] != plain {
		t.Fatalf("at 3m: expired %v, want the plain flow", got)
	}
	if got := expired(2*time.Minute - time.Second); len(got) != 0 {
		t.Fatalf("at 4m59: expired %v", got)
	}
	if got := expired(time.Second); len(got) != 1 || got[0] != ended {
		t.Fatalf("at 5m (transitory 4m + grace): expired %v, want the ended TCP flow", got)
	}
	if got := expired(6*time.Minute - time.Second); len(got) != 0 {
		t.Fatalf("at 10m59: expired %v", got)
	}
	if got := expired(time.Second); len(got) != 1 || got[0] != long {
		t.Fatalf("at 11m (lifetime 10m + grace): expired %v, want the long flow", got)
	}

	// Put replaces and says what it replaced; AddEntry's last-seen time
	// stands.
	seen := clk.now().Add(-2 * time.Minute)
	if _, replaced, err := tb.Put(Entry{Flow: plain, State: StateOpen, LastSeen: seen}); err != nil || replaced {
		t.Fatalf("Put of a new flow: replaced %v, %v", replaced, err)
	}
	old, replaced, err := tb.Put(Entry{Flow: plain, State: StateOpen, LastSeen: seen, Value: books})
	if err != nil || !replaced || old.Value != nil {
		t.Fatalf("Put over a flow: replaced %v, old %+v, %v", replaced, old, err)
	}
	if tb.Len() != 1 {
		t.Fatalf("%d flows after a replacing Put, want 1", tb.Len())
	}
	if got := expired(time.Minute - time.Second); len(got) != 0 {
		t.Fatalf("a flow put back seen 2 min ago expired %v after 59 s", got)
	}
	if got := expired(time.Second); len(got) != 1 || got[0] != plain {
		t.Fatalf("a flow put back seen 2 min ago: expired %v after 1 min, want it", got)
	}
}

// TestRemovedLeaveNoTrace: flows removed (Delete, Put over them) leave
// their heap slots empty until those come up or the heap is compacted;
// neither an empty slot nor a compaction changes which flows expire when,
// and the heap never grows past twice the flows left.
func TestRemovedLeaveNoTrace(t *testing.T) {
	clk := newClock()
	tb := newTable(t, clk, Options{})
	const n = 10_000
	for i := range n {
		if err := tb.Add(flow(session.UDP, i), carrier(session.UDP, 1), StateOpen); err != nil {
			t.Fatal(err)
		}
		clk.add(time.Millisecond)
	}
	for i := 0; i < n; i++ {
		if i%10 != 0 {
			if _, err := tb.Delete(flow(session.UDP, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := len(tb.h); got > 2*tb.Len()+64+1 {
		t.Errorf("heap of %d slots for %d flows", got, tb.Len())
	}
	if ss := tb.Snapshot(); len(ss) != n/10 {
		t.Fatalf("snapshot of %d flows, want %d", len(ss), n/10)
	}
	clk.add(DefaultUDP)
	gone := tb.Expire(nil, 0)
	if len(gone) != n/10 {
		t.Fatalf("expired %d, want %d", len(gone), n/10)
	}
	for i, e := range gone {
		if e.Flow != flow(session.UDP, 10*i) {
			t.Fatalf("expired #%d %v, want flow %d: out of order", i, e.Flow, 10*i)
		}
	}
	if _, ok := tb.NextDue(); ok || tb.Len() != 0 {
		t.Errorf("table not empty: %d flows", tb.Len())
	}
}
