package security

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/cmd/unmap/privdrop"
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// TestAgentsDropPrivileges runs the real `unmap relay` and `unmap edge`
// and reads their /proc status once the edge's session is up and its LAN
// served (so the edge's netlink and router-advertisement work after the
// drop has happened): each has exactly its documented capabilities
// (privdrop.Relay, privdrop.Edge; OPERATING.md "Privileges") effective,
// permitted and as its bounding set, none inheritable or ambient, and
// no_new_privs, on every thread. Then new flows still open both ways
// (the slow paths' map updates, held packets re-sent through the raw
// sockets, the inbound offer), so the kept sets are enough.
func TestAgentsDropPrivileges(t *testing.T) {
	u := e2e.Up(t, lab.CGNPreserve)
	checkCaps(t, "relay", u.Relay, privdrop.Relay)
	checkCaps(t, "edge", u.Edge, privdrop.Edge)

	l := u.Lab
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e2e.EchoServer(t, l.NS(lab.Srv6))
	if _, err := l.NS(lab.LAN).EchoUDP(ctx, netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort), "privileges-out"); err != nil {
		t.Errorf("new outbound flow after the drop: %v", err)
	}
	if _, err := l.NS(lab.LAN).EchoTCP(ctx, netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort), "privileges-tcp"); err != nil {
		t.Errorf("new outbound TCP flow after the drop: %v", err)
	}
	e2e.EchoServer(t, l.NS(lab.LAN))
	if _, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(u.Host, lab.EchoPort), "privileges-in"); err != nil {
		t.Errorf("new inbound flow after the drop: %v", err)
	}
	// Still the same sets: nothing raised anything back.
	checkCaps(t, "relay", u.Relay, privdrop.Relay)
	checkCaps(t, "edge", u.Edge, privdrop.Edge)
}

func checkCaps(t *testing.T, name string, p *lab.Process, keep []cap.Value) {
	t.Helper()
	want := privdrop.Mask(keep)
	pid := p.Cmd.Process.Pid
	st, err := privdrop.ReadStatus(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if st.Eff != want || st.Prm != want || st.Bnd != want || st.Inh != 0 || st.Amb != 0 || !st.NoNewPrivs {
		t.Errorf("%s (pid %d): CapEff=%x CapPrm=%x CapBnd=%x CapInh=%x CapAmb=%x NoNewPrivs=%v; want %x (%s) effective, permitted and bounding, nothing else, no_new_privs",
			name, pid, st.Eff, st.Prm, st.Bnd, st.Inh, st.Amb, st.NoNewPrivs, want, privdrop.Names(keep))
	}
	// The process-wide line is the main thread's: the other threads
	// must say the same.
	if err := threadsHave(pid, want); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

func threadsHave(pid int, want uint64) error {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return err
	}
	if len(tasks) < 2 {
		return fmt.Errorf("%d threads found", len(tasks))
	}
	for _, f := range tasks {
		st, err := privdrop.ReadStatus(f)
		if err != nil {
			continue // ended
		}
		if st.Eff != want || st.Prm != want || st.Bnd != want || !st.NoNewPrivs {
			return fmt.Errorf("%s: CapEff=%x CapPrm=%x CapBnd=%x NoNewPrivs=%v, want %x", f, st.Eff, st.Prm, st.Bnd, st.NoNewPrivs, want)
		}
	}
	return nil
}

// Start-up sets: what a service manager must grant each agent
// (OPERATING.md "Privileges"; systemd CapabilityBoundingSet=). The relay's
// CAP_NET_BIND_SERVICE is for a listen port below 1024 (the lab's is 443).
const (
	relayStartCaps = "bpf,perfmon,net_admin,net_raw,setpcap,net_bind_service"
	edgeStartCaps  = "bpf,perfmon,net_admin,net_raw,setpcap"
)

// TestAgentsStartWithDocumentedCaps starts both agents as root with only
// their documented start-up capabilities (setpriv bounds them before the
// exec and sets no_new_privs, as a systemd unit would: no CAP_SYS_ADMIN,
// no CAP_DAC_OVERRIDE, ...): they load, attach and pin the datapath,
// write their sysctls and routes, connect, serve the LAN and carry a new
// flow, and end with their kept sets.
func TestAgentsStartWithDocumentedCaps(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	bounded := func(cmd *exec.Cmd, caps string) *exec.Cmd {
		args := append([]string{"--no-new-privs", "--inh-caps=-all", "--bounding-set=-all," + plusEach(caps), "--"}, cmd.Args...)
		return exec.Command(setpriv, args...)
	}
	l := labtest.New(t, lab.Options{})
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	relay := l.NS(lab.Relay).StartProcess(t, bounded(d.RelayCmd(), relayStartCaps))
	edge := l.NS(lab.Edge).StartProcess(t, bounded(d.EdgeCmd(), edgeStartCaps))
	d.DumpOnFailure(t)
	e2e.Section(t, d.EdgeS, "session", "the edge's session", func(s e2e.EdgeSession) bool { return s.Connected })
	e2e.WaitAddr(t, l.NS(lab.LAN), lab.SitePrefix)
	checkCaps(t, "relay", relay, privdrop.Relay)
	checkCaps(t, "edge", edge, privdrop.Edge)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e2e.EchoServer(t, l.NS(lab.Srv6))
	if _, err := l.NS(lab.LAN).EchoUDP(ctx, netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort), "start-caps"); err != nil {
		t.Errorf("new outbound flow: %v", err)
	}
}

// plusEach turns "a,b" into "+a,+b" for setpriv.
func plusEach(caps string) string {
	return "+" + strings.ReplaceAll(caps, ",", ",+")
}

// TestAgentsRunAsUser gives both agents `user: nobody`: once set up they
// run as nobody with their kept capabilities, serve their status sockets
// from the folder they handed to nobody, and still open flows both ways.
func TestAgentsRunAsUser(t *testing.T) {
	uid, _, err := privdrop.LookupUser("nobody")
	if err != nil {
		t.Skip("no user nobody:", err)
	}
	l := labtest.New(t, lab.Options{})
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	for _, f := range []string{d.RelayConfig, d.EdgeConfig} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, append(b, "\nuser: nobody\n"...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The status sockets' folder is the Deployment's; nobody must reach
	// it through the test's own temporary folder, as it does /run/unmap
	// through /run.
	if err := os.Chmod(filepath.Dir(filepath.Dir(d.RelaySocket)), 0o711); err != nil {
		t.Fatal(err)
	}
	relay := d.StartRelay(t, l)
	edge := d.StartEdge(t, l)
	d.DumpOnFailure(t)
	e2e.Section(t, d.EdgeS, "session", "the edge's session", func(s e2e.EdgeSession) bool { return s.Connected })
	host := e2e.WaitAddr(t, l.NS(lab.LAN), lab.SitePrefix)
	for _, a := range []struct {
		name string
		p    *lab.Process
		keep []cap.Value
	}{{"relay", relay, privdrop.Relay}, {"edge", edge, privdrop.Edge}} {
		checkCaps(t, a.name, a.p, a.keep)
		st, err := privdrop.ReadStatus(fmt.Sprintf("/proc/%d/status", a.p.Cmd.Process.Pid))
		if err != nil || st.UID != uid {
			t.Errorf("%s runs as uid %d (%v), want nobody (%d)", a.name, st.UID, err, uid)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e2e.EchoServer(t, l.NS(lab.Srv6))
	if _, err := l.NS(lab.LAN).EchoUDP(ctx, netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort), "as-nobody-out"); err != nil {
		t.Errorf("new outbound flow: %v", err)
	}
	e2e.EchoServer(t, l.NS(lab.LAN))
	if _, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(host, lab.EchoPort), "as-nobody-in"); err != nil {
		t.Errorf("new inbound flow: %v", err)
	}
}
