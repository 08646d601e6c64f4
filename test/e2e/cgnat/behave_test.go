package cgnat

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
	"github.com/unmap-dev/unmap/test/natbehave"
)

// Behaviour server ports on srv4's two addresses.
const behavePort1, behavePort2 = 3478, 3479

// behaveServer starts the NAT behaviour server on srv4: Srv4Addr and
// Srv4Addr2, each with both ports.
func behaveServer(t *testing.T, l *lab.Lab) *natbehave.Server {
	t.Helper()
	s, err := natbehave.NewServer(l.NS(lab.Srv4).ListenPacket, lab.Srv4Addr, lab.Srv4Addr2, behavePort1, behavePort2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// probe runs the mapping and filtering tests from the namespace of role,
// each from a fresh socket bound to from.
func probe(t *testing.T, l *lab.Lab, s *natbehave.Server, role lab.Role, from netip.Addr) natbehave.Report {
	t.Helper()
	p := natbehave.Prober{Server: s.Primary(), Socket: func() (net.PacketConn, error) {
		return l.NS(role).ListenPacket("udp4", netip.AddrPortFrom(from, 0).String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := p.Run(ctx)
	if err != nil {
		t.Fatalf("probe from %s: %v", role, err)
	}
	t.Logf("from %s: %v", role, r)
	return r
}

// TestBehaviourRelay: RFC 5780's mapping and filtering tests
// (test/natbehave) from the sub host to the behaviour server on srv4's
// two addresses and two ports, across the relay's CGNAT: endpoint-
// independent mapping and filtering with relay.yaml as lab.Deploy writes
// it (no cgnat.filtering: the default); then, the relay restarted with
// cgnat.filtering set to each other mode, endpoint-independent mapping
// still and that filtering, each answer the filter stopped counted as
// drop-cgnat-filtered. Every mapped address:port is the pool's.
func TestBehaviourRelay(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	l := u.Lab
	s := behaveServer(t, l)
	check := func(want natbehave.Behaviour, filtered uint64) {
		t.Helper()
		before := e2e.Section(t, u.D.RelaySock, "datapath", "the relay's counters", func(map[string]uint64) bool { return true })
		r := probe(t, l, s, lab.Sub, lab.SubAddr)
		if r.Mapping != natbehave.EndpointIndependent || r.Filtering != want {
			t.Errorf("relay with %v filtering: %v, want endpoint-independent mapping, %v filtering", want, r, want)
		}
		for _, a := range r.Mapped {
			if !lab.SubPool4.Contains(a.Addr()) {
				t.Errorf("mapped %v, outside the pool %v", a, lab.SubPool4)
			}
		}
		// Each answer the filter stopped was sent Absent (3) times.
		after := e2e.Section(t, u.D.RelaySock, "datapath", "the filter's drops", func(m map[string]uint64) bool {
			return m["drop-cgnat-filtered"]-before["drop-cgnat-filtered"] >= filtered
		})
		if n := after["drop-cgnat-filtered"] - before["drop-cgnat-filtered"]; n != filtered {
			t.Errorf("relay with %v filtering: %d answers filtered, want %d", want, n, filtered)
		}
	}
	check(natbehave.EndpointIndependent, 0)
	for _, f := range []struct {
		mode     natbehave.Behaviour
		filtered uint64
	}{{natbehave.AddressDependent, 3}, {natbehave.AddressPortDependent, 6}} {
		if err := u.Relay.Stop(); err != nil && !strings.Contains(err.Error(), "signal: terminated") {
			t.Fatalf("relay stop: %v", err)
		}
		conf, err := os.ReadFile(u.D.RelayConfig)
		if err != nil {
			t.Fatal(err)
		}
		// The cgnat section is relay.yaml's last: one more field of it.
		conf = append(conf, "  filtering: "+f.mode.String()+"\n"...)
		if err := os.WriteFile(u.D.RelayConfig, conf, 0o600); err != nil {
			t.Fatal(err)
		}
		u.Relay = u.D.StartRelay(t, l)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = u.Relay.WaitFor(ctx, "relay listening")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		check(f.mode, f.filtered)
		// Back to the file as Deploy wrote it, for the next mode.
		if err := os.WriteFile(u.D.RelayConfig, conf[:len(conf)-len("  filtering: "+f.mode.String()+"\n")], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c := s.Counts(); c["requests"] == 0 || len(c) != 2 {
		t.Errorf("behaviour server counts %v: drops, or no requests", c)
	}
}

// TestBehaviourNftablesCGN: the same probe from rogue, a customer behind
// the lab's nftables CGN (masquerade, no unmap in the lab), reads that
// NAT's known behaviour: port-preserving masquerade maps endpoint-
// independently (its conntrack keeps the source port while it is free)
// and filters by address and port; random,fully-random maps by address
// and port as well. So the probe tells this NAT from the relay's in each
// of the relay's modes: the proof that it measures and does not assume.
func TestBehaviourNftablesCGN(t *testing.T) {
	for _, c := range []struct {
		mode    lab.CGNMode
		mapping natbehave.Behaviour
	}{{lab.CGNPreserve, natbehave.EndpointIndependent}, {lab.CGNRandom, natbehave.AddressPortDependent}} {
		t.Run(c.mode.String(), func(t *testing.T) {
			l := labtest.New(t, lab.Options{CGNMode: c.mode})
			s := behaveServer(t, l)
			r := probe(t, l, s, lab.Rogue, lab.RogueAddr)
			if r.Mapping != c.mapping || r.Filtering != natbehave.AddressPortDependent {
				t.Errorf("nftables CGN, %v: %v, want %v mapping, address-and-port-dependent filtering", c.mode, r, c.mapping)
			}
			for _, a := range r.Mapped {
				if a.Addr() != lab.CGNPublic {
					t.Errorf("mapped %v, not the CGN's public address %v", a, lab.CGNPublic)
				}
			}
		})
	}
}
