package relay

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/test/priv"
	"github.com/unmap-dev/unmap/xdp"
)

// replayCarriers is a relay without a datapath, for what a replay is
// allowed to claim.
func replayCarriers(t *testing.T) *agent {
	t.Helper()
	c, err := newAgent(pinSettings(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReplayRefusesWhatTheRelayWouldNotGrant: an authenticated edge
// replays carriers it never had. Each entry the relay could not have
// bound itself is refused with a code, counted by reason, and holds no
// port: a carrier bound to a host the edge picks (the relay would send
// the flow's traffic there from its own address: a reflector), to another
// site's CGNAT address (its ports), or to a system port.
func TestReplayRefusesWhatTheRelayWouldNotGrant(t *testing.T) {
	home := edgePeer{"home", 1, pinPublic}
	for _, tc := range []struct {
		name   string
		public netip.AddrPort
		proto  session.Proto
		want   proto.Code
		count  string
	}{
		{"reflector", netip.MustParseAddrPort("192.0.2.99:53"), session.UDP, proto.CodeAddressNotGranted, "replay-refused-public-address"},
		{"another site's CGNAT address", netip.AddrPortFrom(pinAway, 40000), session.UDP, proto.CodeAddressNotGranted, "replay-refused-public-address"},
		{"system port of its own CGNAT address", netip.AddrPortFrom(pinPublic, 53), session.UDP, proto.CodeAddressNotGranted, "replay-refused-public-port"},
		{"port 0", netip.AddrPortFrom(pinPublic, 0), session.TCP, proto.CodeAddressNotGranted, "replay-refused-public-port"},
		{"relay port outside the carrier ports", netip.AddrPortFrom(pinPublic, 40000), session.UDP, proto.CodeAddressNotGranted, "replay-refused-address-not-granted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := replayCarriers(t)
			p := newPinFlow(tc.proto, "2001:db8:5::2", pinPublic, 20001)
			e := p.replay()
			e.Public = tc.public
			if tc.count == "replay-refused-address-not-granted" {
				e.Relay = netip.AddrPortFrom(pinRelay, 19999)
			}
			if got := c.replayed(home, e); got != tc.want {
				t.Errorf("replay: %v, want %v", got, tc.want)
			}
			if c.m.Snapshot()[tc.count] != 1 {
				t.Errorf("counts %v, want %s = 1", c.m.Snapshot(), tc.count)
			}
			if n := c.ports.Held("home"); n != 0 || c.flows.len() != 0 {
				t.Errorf("home holds %d ports and the relay %d flows after a refused replay", n, c.flows.len())
			}
		})
	}

	t.Run("its own CGNAT address", func(t *testing.T) {
		c := replayCarriers(t)
		p := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20001)
		if got := c.replayed(home, p.replay()); got != proto.CodeOK {
			t.Fatalf("replay of a carrier bound to the session's CGNAT address: %v", got)
		}
		// ICMP carriers have an echo identifier, which may be any value.
		icmp := newPinFlow(session.ICMP, "2001:db8:5::3", pinPublic, 20002)
		e := icmp.replay()
		e.Public = netip.AddrPortFrom(pinPublic, 7)
		if got := c.replayed(home, e); got != proto.CodeOK {
			t.Fatalf("replay of an ICMP carrier with echo id 7: %v", got)
		}
	})
}

// TestReplayQuota: replayed carriers count against the site's quota like
// opened ones; the refusal is answered and counted.
func TestReplayQuota(t *testing.T) {
	c := replayCarriers(t)
	home := edgePeer{"home", 1, pinPublic}
	for i := range 16 { // MaxFlows of home, and all of the carrier ports
		p := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20000+uint16(i))
		if got := c.replayed(home, p.replay()); got != proto.CodeOK {
			t.Fatalf("replay %d: %v", i, got)
		}
	}
	p := newPinFlow(session.TCP, "2001:db8:5::2", pinPublic, 20000)
	if got := c.replayed(home, p.replay()); got != proto.CodeQuotaExceeded {
		t.Errorf("replay over the quota: %v, want quota-exceeded", got)
	}
	if c.m.Snapshot()["replay-refused-quota-exceeded"] != 1 {
		t.Errorf("counts %v", c.m.Snapshot())
	}
}

// TestLifetimeCapped: an edge asks for a lifetime of a century; the
// relay keeps an idle flow no longer than its own timeout for the
// protocol, whether the flow was opened or replayed, and says so in the
// grant.
func TestLifetimeCapped(t *testing.T) {
	c := replayCarriers(t)
	home := edgePeer{"home", 1, pinPublic}
	const century = 100 * 365 * 24 * 3600
	udp := pinSettings().Timers.UDP

	p := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20001)
	e := p.replay()
	e.LifetimeSec = century
	if got := c.replayed(home, e); got != proto.CodeOK {
		t.Fatalf("replay: %v", got)
	}
	if k := c.flows.get(p.f); k.lifetime != udp {
		t.Errorf("replayed lifetime %v, want the relay's UDP timeout %v", k.lifetime, udp)
	}
	if lim := c.idleLimit(p.f, c.flows.get(p.f)); lim > udp+expireGrace {
		t.Errorf("idle limit %v, want at most %v", lim, udp+expireGrace)
	}

	o := newPinFlow(session.UDP, "2001:db8:5::3", pinPublic, 20002)
	g, _ := c.open(home, &proto.FlowOpen{Flow: o.f, CarrierProto: session.UDP, EdgePort: 61002, Token: 3, LifetimeSec: century})
	if g.Result != proto.CodeOK {
		t.Fatalf("open: %v", g.Result)
	}
	if g.LifetimeSec != uint32(udp/time.Second) || c.flows.get(o.f).lifetime != udp {
		t.Errorf("opened: granted %d s, kept %v; want %v", g.LifetimeSec, c.flows.get(o.f).lifetime, udp)
	}
	// A shorter lifetime is kept as asked.
	s := newPinFlow(session.UDP, "2001:db8:5::4", pinPublic, 20003)
	g, _ = c.open(home, &proto.FlowOpen{Flow: s.f, CarrierProto: session.UDP, EdgePort: 61003, Token: 4, LifetimeSec: 30})
	if g.LifetimeSec != 30 {
		t.Errorf("granted %d s for 30 s asked", g.LifetimeSec)
	}
}

// TestReplayMapFailureRefused: a replayed bound carrier that the
// datapath cannot take (here: its flow table is full) is refused with
// no-resources and gives its port back, instead of being accepted with
// no entries (the edge would send into a carrier that forwards nothing).
func TestReplayMapFailureRefused(t *testing.T) {
	c := replayCarriers(t)
	c.dp = fullDatapath(t)

	home := edgePeer{"home", 1, pinPublic}
	p := newPinFlow(session.UDP, "2001:db8:5::2", pinPublic, 20001)
	if got := c.replayed(home, p.replay()); got != proto.CodeNoResources {
		t.Errorf("replay the datapath refused: %v, want no-resources", got)
	}
	if c.m.Snapshot()["map-failed"] != 1 || c.m.Snapshot()["replay-refused-no-resources"] != 1 {
		t.Errorf("counts %v", c.m.Snapshot())
	}
	if n := c.ports.Held("home"); n != 0 || c.flows.len() != 0 {
		t.Errorf("home holds %d ports and the relay %d flows", n, c.flows.len())
	}
}

// fullDatapath is a relay datapath (no interface) whose flow table takes
// no more flows: away's flows fill it.
func fullDatapath(t *testing.T) *datapath {
	t.Helper()
	priv.Require(t)
	s := pinSettings()
	cfg := xlat.Config{CarrierAddr: s.Addresses[0], PortLo: s.CarrierPorts.First, PortHi: s.CarrierPorts.Last}
	d, err := xdp.Load(cfg, xdp.Options{Buckets: 1, MaxFlows: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	dp := &datapath{Datapath: &slowpath.Datapath{XDP: d, Cfg: cfg}}
	for i := range 64 {
		p := newPinFlow(session.TCP, "2001:db8:7::2", pinAway, 20000+uint16(i))
		if dp.mapFlow(p.f, p.c) != nil {
			return dp
		}
	}
	t.Fatal("a table of one bucket and spill hashes of one took 64 flows")
	return nil
}
