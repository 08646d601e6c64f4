package relay

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/slowpath"
)

// TestSweep drives the relay's own expiry with a fake clock and fake
// counters: active flows stay, idle ones go after their timeout (or the
// longer lifetime the edge asked for) and the grace, and their ports come
// back.
func TestSweep(t *testing.T) {
	relayAddr, public := netip.MustParseAddr("198.51.100.6"), netip.MustParseAddr("198.51.100.2")
	s := &Settings{
		Addresses:    []netip.Addr{relayAddr},
		CarrierPorts: config.PortRange{First: 20000, Last: 20015},
		Timers:       config.Timers{UDP: 2 * time.Minute, TCPEstablished: 124 * time.Minute, TCPTransitory: 4 * time.Minute, ICMP: time.Minute},
		Sites:        []Site{{ID: "home", Prefix: netip.MustParsePrefix("2001:db8:5::/56"), MaxFlows: 16}},
	}
	c, err := newAgent(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }
	packets := map[session.Flow]uint64{}
	endedConn := map[session.Flow]bool{}
	c.activity = func(f session.Flow, _ session.Carrier) (slowpath.Activity, bool) {
		n, ok := packets[f]
		return slowpath.Activity{Out: n, Closed: endedConn[f]}, ok
	}
	flow := func(port uint16) session.Flow {
		return session.Flow{Proto: session.UDP, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), port),
			Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	}
	add := func(f session.Flow, bound bool, lifetime time.Duration) {
		lease, err := c.ports.Grant("home", public, f.Proto)
		if err != nil {
			t.Fatal(err)
		}
		k := &carrier{site: "home", lease: lease, edgePort: f.Site.Port(), lifetime: lifetime}
		if bound {
			k.public = netip.AddrPortFrom(public, 40000+f.Site.Port())
			packets[f] = 0
		}
		c.flows.mu.Lock()
		c.add(f, k)
		c.flows.mu.Unlock()
	}
	active, idle, long, unbound := flow(1), flow(2), flow(3), flow(4)
	add(active, true, 0)
	add(idle, true, 0)
	add(long, true, 10*time.Minute) // the edge asked for more than the relay's 2 min
	add(unbound, false, 0)
	// A TCP connection that ended (its FINs seen by the datapath) keeps
	// only the transitory 4 min, not the established 124.
	ended := flow(5)
	ended.Proto = session.TCP
	add(ended, true, 124*time.Minute)
	endedConn[ended] = true

	has := func(f session.Flow) bool {
		c.flows.mu.Lock()
		defer c.flows.mu.Unlock()
		_, ok := c.flows.lookup(f)
		return ok
	}
	step := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); {
			now = now.Add(expireEvery)
			packets[active]++
			c.sweep()
		}
	}
	step(2*time.Minute + 40*time.Second) // within UDP 2 min + 1 min grace
	if !has(active) || !has(idle) || !has(long) || !has(unbound) {
		t.Fatalf("after 2m40s: active %v idle %v long %v unbound %v; want all", has(active), has(idle), has(long), has(unbound))
	}
	step(40 * time.Second) // past it: the idle one goes, and the unbound one (never past 2 min)
	if !has(active) || has(idle) || !has(long) || has(unbound) {
		t.Fatalf("after 3m20s: active %v idle %v long %v unbound %v; want true false true false", has(active), has(idle), has(long), has(unbound))
	}
	if !has(ended) {
		t.Error("the ended TCP flow went before its transitory 4 min + grace")
	}
	step(2 * time.Minute)
	if has(ended) {
		t.Error("the ended TCP flow outlived its transitory 4 min + grace")
	}
	step(6 * time.Minute) // past the edge's 10 min + grace
	if has(long) || !has(active) {
		t.Errorf("after 11m20s: long %v active %v; want false true", has(long), has(active))
	}
	if got := c.ports.Stats().InUse; got != 1 {
		t.Errorf("ports in use %d, want 1 (the active flow's)", got)
	}
	if got := c.m.Snapshot()["expired"]; got != 4 {
		t.Errorf("expired counted %d, want 4", got)
	}
}
