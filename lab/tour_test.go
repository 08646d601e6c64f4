package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestBaselineTour runs the baseline tour with both CGN modes and checks
// that every row finds what it expects: outbound IPv4 works through both
// NATs, IPv6 and inbound paths do not.
func TestBaselineTour(t *testing.T) {
	for _, mode := range []CGNMode{CGNPreserve, CGNRandom} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			l := newForTest(t, Options{CGNMode: mode})
			env, err := NewEnv(l)
			if err != nil {
				t.Fatal(err)
			}
			checks := BaselineChecks()
			res := RunTour(context.Background(), env, checks)
			var table strings.Builder
			if err := WriteTable(&table, res); err != nil {
				t.Fatal(err)
			}
			t.Logf("tour with cgn %s:\n%s", mode, table.String())
			if len(res) != len(checks) {
				t.Fatalf("%d results for %d checks", len(res), len(checks))
			}
			for _, r := range res {
				if !r.OK() {
					t.Errorf("%q: expected it %s, got error %v", r.Check.Name, r.Check.Expect, r.Err)
				}
			}
			if !AllOK(res) {
				t.Errorf("AllOK is false")
			}
			if !strings.Contains(table.String(), "RESULT") || strings.Count(table.String(), "\n") != len(checks)+1 {
				t.Errorf("table has not one row per check:\n%s", table.String())
			}
		})
	}
}

// TestTourFlagsUnexpected makes sure a row that differs from its
// expectation is reported as such, both ways.
func TestTourFlagsUnexpected(t *testing.T) {
	checks := []Check{
		{Name: "works but expected to fail", Expect: Fails, Run: func(context.Context, *Env) error { return nil }},
		{Name: "fails but expected to work", Expect: Works, Run: func(context.Context, *Env) error { return fmt.Errorf("boom") }},
		{Name: "fails as expected", Expect: Fails, Run: func(context.Context, *Env) error { return fmt.Errorf("no route") }},
	}
	res := RunTour(context.Background(), &Env{}, checks)
	if res[0].OK() || res[1].OK() || !res[2].OK() {
		t.Errorf("verdicts %v %v %v, want false false true", res[0].OK(), res[1].OK(), res[2].OK())
	}
	if AllOK(res) {
		t.Error("AllOK with failing rows")
	}
	var b strings.Builder
	if err := WriteTable(&b, res); err != nil {
		t.Fatal(err)
	}
	if strings.Count(b.String(), "FAIL") != 2 || !strings.Contains(b.String(), "fails: boom") {
		t.Errorf("table:\n%s", b.String())
	}

	// A tour stopped half way: the rest is not run, and nothing that was
	// cut short passes, even a check expected to fail.
	ctx, cancel := context.WithCancel(context.Background())
	stopping := []Check{
		{Name: "runs", Expect: Works, Run: func(context.Context, *Env) error { return nil }},
		{Name: "cut short", Expect: Fails, Run: func(ctx context.Context, _ *Env) error { cancel(); return ctx.Err() }},
		{Name: "never runs", Expect: Fails, Run: func(context.Context, *Env) error { t.Error("ran after cancel"); return nil }},
	}
	res = RunTour(ctx, &Env{}, stopping)
	if !res[0].OK() || res[1].OK() || !res[1].Stopped || res[2].OK() || !res[2].Stopped {
		t.Errorf("stopped tour: %+v", res)
	}
	b.Reset()
	_ = WriteTable(&b, res)
	if strings.Count(b.String(), "stopped") != 2 {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestCGNTranslates checks the CGN itself: srv4 sees every connection of
// the site host from the CGN's public address; port-preserving mode keeps
// the host's source port, fully random mode changes it (at least once in
// several connections: a random port may equal the original by chance).
func TestCGNTranslates(t *testing.T) {
	for _, mode := range []CGNMode{CGNPreserve, CGNRandom} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			l := newForTest(t, Options{CGNMode: mode})
			srv, err := l.NS(Srv4).StartEcho(netip.AddrPortFrom(Srv4Addr, EchoPort))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			const conns = 8
			changed := 0
			for i := range conns {
				for _, network := range []string{"tcp", "udp"} {
					token := fmt.Sprintf("port-%s-%d", network, i)
					var local netip.AddrPort
					if network == "tcp" {
						local, err = l.NS(LAN).EchoTCP(ctx, srv.Addr, token)
					} else {
						local, err = l.NS(LAN).EchoUDP(ctx, srv.Addr, token)
					}
					if err != nil {
						t.Fatalf("%s %d: %v", network, i, err)
					}
					p, ok := srv.PeerOf(token)
					if !ok {
						t.Fatalf("%s %d: server did not see %q", network, i, token)
					}
					if p.Remote.Addr() != CGNPublic {
						t.Errorf("%s %d: seen from %s, want %s", network, i, p.Remote.Addr(), CGNPublic)
					}
					if local.Addr() != LANAddr {
						t.Errorf("%s %d: local address %s, want %s", network, i, local.Addr(), LANAddr)
					}
					if p.Remote.Port() != local.Port() {
						changed++
					}
					if mode == CGNPreserve && p.Remote.Port() != local.Port() {
						t.Errorf("%s %d: port %d became %d in preserve mode", network, i, local.Port(), p.Remote.Port())
					}
				}
			}
			t.Logf("cgn %s: %d of %d source ports changed", mode, changed, 2*conns)
			if mode == CGNRandom && changed == 0 {
				t.Errorf("random mode kept all %d source ports", 2*conns)
			}
		})
	}
}

// TestEchoServerClose checks that Close does not wait for an idle client,
// and that a closed server refuses new connections.
func TestEchoServerClose(t *testing.T) {
	l := newForTest(t, Options{})
	srv, err := l.NS(Srv4).StartEcho(netip.AddrPortFrom(Srv4Addr, EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	idle, err := l.NS(Inet).Dial(ctx, "tcp", srv.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := l.NS(Inet).EchoTCP(ctx, srv.Addr, "before close"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// Waiting out the idle client would take as long as it stays; a
	// loaded machine takes a little while anyway.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close waited %v for an idle client", d)
	}
	if _, err := l.NS(Inet).EchoTCP(ctx, srv.Addr, "after close"); err == nil {
		t.Error("a closed server still answers")
	}
	if len(srv.Peers()) != 1 {
		t.Errorf("peers %v, want the one exchange before Close", srv.Peers())
	}
}
