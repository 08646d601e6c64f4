package cgnat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

// TestSubscriberQuota: a subscriber opening more UDP flows than its
// quota (the lab's two 512-port blocks) gets exactly its quota's
// mappings; each later flow's packet is answered at once with ICMP
// administratively prohibited, which the subscriber's connected socket
// reports as EHOSTUNREACH; another subscriber of the same relay still
// gets a block and reaches srv4; the relay counts the subscriber spent
// and the refusals; and its /metrics say what happened: three blocks
// granted and logged, one subscriber refused for its quota, two holding
// blocks, the mappings the flows made (at the next sweep), each
// cgnat-no-block packet sent on again, one admin-prohibited answer for
// each refused flow.
func TestSubscriberQuota(t *testing.T) {
	const quota = 2 * 512 // blocks_per_subscriber x block ports (lab.Deploy)
	l := labtest.New(t, lab.Options{CGNMode: lab.CGNPreserve, CGNUDPTimeout: 30 * time.Second})
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	e2e.WithMetrics(t, d.RelayConfig)
	d.StartRelay(t, l) // the subscribers need no edge
	d.DumpOnFailure(t)
	e2e.Section(t, d.RelaySock, "cgnat", "the relay's cgnat", func(map[string]uint64) bool { return true })
	srv := e2e.EchoServer(t, l.NS(lab.Srv4))
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.Srv4Addr, lab.EchoPort))
	sub := l.NS(lab.Sub)
	other := netip.MustParseAddr("100.64.100.3")
	if err := sub.AddAddr(string(lab.Relay), netip.PrefixFrom(other, lab.SubNet.Bits())); err != nil {
		t.Fatal(err)
	}
	// flow sends one datagram from a new socket of from until it is
	// echoed (true) or refused (false), at most 10 tries 300 ms apart.
	flow := func(from netip.Addr) (bool, error) {
		var c *net.UDPConn
		if err := sub.Do(func() (err error) {
			c, err = net.DialUDP("udp4", &net.UDPAddr{IP: from.AsSlice()}, to)
			return err
		}); err != nil {
			return false, err
		}
		t.Cleanup(func() { c.Close() }) // the mapping lives on anyway
		msg, buf := []byte("quota\n"), make([]byte, 64)
		for range 10 {
			if _, err := c.Write(msg); err != nil {
				if errors.Is(err, syscall.EHOSTUNREACH) {
					return false, nil // the refusal of an earlier try
				}
				return false, err
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err := c.Read(buf)
			if err == nil {
				return true, nil
			}
			if errors.Is(err, syscall.EHOSTUNREACH) {
				return false, nil
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return false, err
			}
		}
		return false, errors.New("neither echoed nor refused in 10 tries")
	}
	echoed, refused := 0, 0
	start := time.Now()
	for i := range quota + 100 {
		ok, err := flow(lab.SubAddr)
		if err != nil {
			t.Fatalf("flow %d: %v (%d echoed, %d refused before)", i, err, echoed, refused)
		}
		if ok {
			if refused > 0 {
				t.Fatalf("flow %d echoed after %d refusals", i, refused)
			}
			echoed++
		} else {
			refused++
		}
	}
	t.Logf("%d flows echoed, %d refused, in %v", echoed, refused, time.Since(start).Round(time.Millisecond))
	if echoed != quota || refused != 100 {
		t.Errorf("%d flows echoed and %d refused, want the quota %d and 100", echoed, refused, quota)
	}
	ports := map[netip.AddrPort]bool{}
	for _, p := range srv.Peers() {
		if p.Network == "udp" && p.Remote.Addr() == lab.SubPool4.Addr() {
			ports[p.Remote] = true
		}
	}
	if len(ports) != quota {
		t.Errorf("srv4 saw %d public address:ports, want %d", len(ports), quota)
	}
	if ok, err := flow(other); err != nil || !ok {
		t.Errorf("another subscriber after the first was spent: echoed %v, %v", ok, err)
	}
	e2e.Section(t, d.RelaySock, "cgnat", "the relay's cgnat counts", func(m map[string]uint64) bool {
		return m["spent"] == 1 && m["spent_now"] == 1 && m["grants"] == 3 && m["subscribers"] == 2
	})
	e2e.Section(t, d.RelaySock, "datapath", "the refusals counted", func(m map[string]uint64) bool {
		return m["cgnat-refused"] >= 100
	})

	logged, err := os.ReadFile(d.CGNATLog)
	if err != nil {
		t.Fatal(err)
	}
	grants := float64(strings.Count(string(logged), `"event":"grant"`))
	// The mappings gauge is read at the sweep (every 10 s): poll past one.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wrong []string
	for {
		m, err := e2e.FetchMetrics(ctx, l.NS(lab.Relay))
		if err != nil {
			t.Fatalf("relay /metrics: %v", err)
		}
		get := func(name string, labels ...string) float64 {
			v, ok := m.Get(name, labels...)
			if !ok {
				t.Fatalf("relay /metrics: no %s%v", name, labels)
			}
			return v
		}
		noBlock := get("unmap_datapath_packets_total", `reason="cgnat-no-block"`)
		wrong = nil
		for _, c := range []struct {
			what      string
			got, want float64
		}{
			{"blocks granted", get("unmap_relay_cgnat_blocks_total", `event="granted"`), 3},
			{"grants in the block log", grants, 3},
			{"log records written", get("unmap_relay_cgnat_log_records_total", `result="written"`), 3},
			{"log records failed", get("unmap_relay_cgnat_log_records_total", `result="failed"`), 0},
			{"blocks held", get("unmap_relay_cgnat_blocks"), 3},
			{"pool blocks (4 addresses x 8)", get("unmap_relay_cgnat_pool_blocks"), 32},
			{"subscribers", get("unmap_relay_cgnat_subscribers"), 2},
			{"subscribers refused now", get("unmap_relay_cgnat_subscribers_refused"), 1},
			{"refused for the quota", get("unmap_relay_cgnat_refused_total", `reason="quota"`), 1},
			{"refused for the pool", get("unmap_relay_cgnat_refused_total", `reason="pool-exhausted"`), 0},
			{"UDP mappings at the sweep", get("unmap_relay_cgnat_mappings", `protocol="udp"`), quota + 1},
			{"first packets sent on (= the datapath's cgnat-no-block)", get("unmap_relay_cgnat_first_packets_total", `event="resent"`), noBlock},
			{"first packets of the two subscribers and the one past the quota", noBlock, 3},
			{"admin-prohibited answers (one a refused flow)", get("unmap_datapath_packets_total", `reason="cgnat-refused"`), float64(refused)},
			{"agent errors", get("unmap_relay_cgnat_errors_total"), 0},
		} {
			if c.got != c.want {
				wrong = append(wrong, fmt.Sprintf("%s: %v, want %v", c.what, c.got, c.want))
			}
		}
		if len(wrong) == 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, w := range wrong {
		t.Error(w)
	}
}
