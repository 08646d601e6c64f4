package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/status"
	"github.com/unmap-dev/unmap/test/labtest"
)

// Deployment is the lab's deployment with the tests' hooks.
type Deployment struct {
	*lab.Deployment
	RelaySock, EdgeS string
}

// CarrierPorts is the relay's carrier port range in the tests.
const CarrierPorts = lab.RelayCarrierPorts

// Deploy makes the certificates with the binary's own `unmap cert` and
// writes relay.yaml and edge.yaml for the lab's addressing plan.
func Deploy(t *testing.T, bin string) *Deployment {
	t.Helper()
	d, err := lab.Deploy(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return &Deployment{Deployment: d, RelaySock: d.RelaySocket, EdgeS: d.EdgeSocket}
}

// Running is a lab with unmap up in it: the relay and edge running, the
// edge's session up, the LAN host's address from the site's prefix.
type Running struct {
	Lab     *lab.Lab
	D       *Deployment
	Relay   *lab.Process
	Edge    *lab.Process
	Session EdgeSession
	Host    netip.Addr
}

// Up builds a lab with the CGN in mode, deploys unmap in it and starts
// both agents; it returns once the edge's session is up and the LAN host
// has its address.
func Up(t *testing.T, mode lab.CGNMode) Running {
	t.Helper()
	u := Running{Lab: labtest.New(t, lab.Options{CGNMode: mode, CGNUDPTimeout: 30 * time.Second})}
	u.D = Deploy(t, lab.BuildUnmap(t))
	u.Relay = u.D.StartRelay(t, u.Lab)
	u.Edge = u.D.StartEdge(t, u.Lab)
	u.D.DumpOnFailure(t)
	u.Session = Section(t, u.D.EdgeS, "session", "the edge's session", func(s EdgeSession) bool { return s.Connected })
	u.Host = WaitAddr(t, u.Lab.NS(lab.LAN), lab.SitePrefix)
	return u
}

// BothCGNs runs a test with the upstream CGN in each mode, with the
// 30 s UDP timeout some CGNATs use: port-preserving masquerade, and
// random,fully-random (address-and-port-dependent mapping, the harsh
// case). Carriers bind by token, not by port, so both must work.
func BothCGNs(t *testing.T, test func(*testing.T, lab.CGNMode)) {
	for _, mode := range []lab.CGNMode{lab.CGNPreserve, lab.CGNRandom} {
		t.Run(mode.String(), func(t *testing.T) { test(t, mode) })
	}
}

// DumpOnFailure logs both agents' status when the test fails: the
// counters say where packets went.
func (d *Deployment) DumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, sock := range []string{d.EdgeS, d.RelaySock} {
			st, err := status.Fetch(context.Background(), sock)
			if err != nil {
				t.Logf("%s: %v", sock, err)
				continue
			}
			for name, v := range st.Sections {
				t.Logf("%s %s: %s", st.Role, name, v)
			}
		}
	})
}

func (d *Deployment) StartRelay(t *testing.T, l *lab.Lab) *lab.Process {
	return l.NS(lab.Relay).StartProcess(t, d.RelayCmd())
}

func (d *Deployment) StartEdge(t *testing.T, l *lab.Lab) *lab.Process {
	return l.NS(lab.Edge).StartProcess(t, d.EdgeCmd())
}

// Section polls an agent's status until cond accepts the named section.
func Section[T any](t *testing.T, socket, name, what string, cond func(T) bool) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	v, err := lab.WaitSection(ctx, socket, name, cond)
	if err != nil {
		t.Fatalf("gave up waiting for %s: %v", what, err)
	}
	return v
}

type EdgeSession = lab.EdgeSession

func WaitAddr(t *testing.T, ns *lab.NS, p netip.Prefix) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a, err := ns.WaitAddr(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// FirstNotLost checks the echo server got the token's datagram once: the
// client resends after 200 ms without an answer, so a second copy means
// the flow's first packet was lost while the flow was set up.
func FirstNotLost(t *testing.T, srv *lab.EchoServer, token string) {
	t.Helper()
	n := 0
	for _, p := range srv.Peers() {
		if p.Token == token {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the server received %d copies of %q: the first packet of the flow was lost", n, token)
	}
}
