package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/unmap-dev/unmap/test/priv"
)

// container is a systemd booted by systemd-nspawn from this machine's
// /usr, with a root of its own (tmpfs) and a network namespace of its
// own: the packaged units run there under a real systemd (PID 1 of this
// machine need not be systemd), and nothing reaches this machine's root
// namespace.
type container struct {
	t     *testing.T
	nspwn *exec.Cmd
	log   bytes.Buffer
	pid   int // the container's systemd, as this machine sees it
}

// bootContainer starts the container with binds (host path → container
// path, read-only) and waits until its systemd has booted.
func bootContainer(t *testing.T, binds map[string]string) *container {
	t.Helper()
	nspawn := needProgram(t, "systemd-nspawn", "systemd-container")
	needProgram(t, "nsenter", "util-linux")
	c := &container{t: t}
	args := []string{
		"-D", "/", "--volatile=yes", "--private-network", "--register=no", "--keep-unit",
		"--capability=all",
		// nspawn's own system call filter refuses bpf(2) to everything
		// in the container; the agents' units have their own filter.
		"--system-call-filter=bpf perf_event_open",
		"--machine=unmap-test-" + strconv.Itoa(os.Getpid()),
		"--console=passive",
	}
	for src, dst := range binds {
		args = append(args, "--bind-ro="+src+":"+dst)
	}
	args = append(args, "-b", "systemd.firstboot=no")
	c.nspwn = exec.Command(nspawn, args...)
	c.nspwn.Stdout, c.nspwn.Stderr = &c.log, &c.log
	c.nspwn.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.nspwn.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	t.Cleanup(c.stop)

	deadline := time.Now().Add(30 * time.Second)
	for c.pid == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the container's systemd did not start in 30 s:\n%s", c.log.String())
		}
		time.Sleep(200 * time.Millisecond)
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.nspwn.Process.Pid, c.nspwn.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			c.pid, _ = strconv.Atoi(f[0])
		}
	}
	// Degraded is fine: some of this machine's units do not fit a
	// container. The agents' units are checked one by one.
	// Until its systemd listens, systemctl cannot ask (no bus yet).
	deadline = time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		out, _ := c.execCtx(ctx, nil, "systemctl", "is-system-running", "--wait")
		cancel()
		s := strings.TrimSpace(out)
		if s == "running" || s == "degraded" {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not boot in 90 s (%q):\n%s", s, c.log.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *container) stop() {
	if c.nspwn.Process == nil {
		return
	}
	// SIGTERM: nspawn powers the container off; SIGKILL if it hangs.
	_ = c.nspwn.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.nspwn.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.nspwn.Process.Kill()
		<-done
	}
}

// exec runs a command in all of the container's namespaces, as if typed
// at its console.
func (c *container) exec(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.execCtx(ctx, stdin, name, args...)
}

func (c *container) execCtx(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.pid), "-a", name}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *container) must(stdin []byte, name string, args ...string) string {
	c.t.Helper()
	out, err := c.exec(stdin, name, args...)
	if err != nil {
		c.t.Fatalf("in the container: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// waitJournal waits until a unit's log holds want.
func (c *container) waitJournal(unit, want string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := c.exec(nil, "journalctl", "-u", unit, "-o", "cat", "--no-pager")
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			st, _ := c.exec(nil, "systemctl", "status", "--no-pager", "-l", unit)
			c.t.Fatalf("%s did not log %q in %v:\n%s\n%s", unit, want, timeout, out, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// needProgram finds a program, or skips (fails under UNMAP_REQUIRE_PRIV=1)
// naming the Debian package that has it.
func needProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if priv.Required() {
		t.Fatalf("%s not found and %s=1 forbids skipping: apt-get install %s", name, priv.EnvRequire, pkg)
	}
	t.Skipf("%s not found: apt-get install %s (Debian's package) to run this test", name, pkg)
	return ""
}

// TestUnitsRunAgents boots a systemd in a container and runs the packaged
// units there, as shipped but for the binary's path: the relay and the
// edge start under the whole sandbox (capability set, system call filter,
// read-only file system but the pins and sysctls), the edge's control
// session comes up, a restarted relay takes its pinned XDP link back, a
// template instance runs a second site's file and socket, and stopping one
// agent leaves the other's status socket. This is the check that found
// that ProtectKernelTunables= keeps /sys/fs/bpf read-only, that systemd
// refuses a mount unit for /sys/fs/bpf and that ExecStartPre=+ mounts into
// a namespace of its own.
func TestUnitsRunAgents(t *testing.T) {
	priv.Require(t)
	_, d := builtPackage(t)
	dir := t.TempDir()

	// The binary, at a path outside /usr (the container's /usr is this
	// machine's, read-only).
	binDir := filepath.Join(dir, "bin")
	bin := filepath.Join(binDir, "unmap")
	must(t, os.MkdirAll(binDir, 0o755))
	must(t, os.WriteFile(bin, d.data["/usr/bin/unmap"].data, 0o755))

	// /etc/unmap: the packaged configurations, the edge's pointed at
	// this container's interfaces and relay, and certificates.
	etc := filepath.Join(dir, "etc-unmap")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("unmap %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ca := filepath.Join(dir, "ca")
	run("cert", "ca", "--out", ca)
	run("cert", "relay", "--ca", ca, "--name", "relay.example.net", "--ip", "198.51.100.6", "--out", etc)
	run("cert", "edge", "--ca", ca, "--site", "home", "--out", etc)
	must(t, os.WriteFile(filepath.Join(etc, "relay.yaml"), d.data["/etc/unmap/relay.yaml"].data, 0o644))
	edgeYAML := strings.NewReplacer(
		"lan_interface: eth1", "lan_interface: lan0",
		"wan_interface: eth0", "wan_interface: wan0",
		"relay: relay.example.net:443", "relay: 198.51.100.6:443",
	).Replace(string(d.data["/etc/unmap/edge.yaml"].data))
	if !strings.Contains(edgeYAML, "lan0") || !strings.Contains(edgeYAML, "198.51.100.6:443") {
		t.Fatalf("examples/edge.yaml changed: the test cannot point it at the container")
	}
	must(t, os.WriteFile(filepath.Join(etc, "edge.yaml"), []byte(edgeYAML), 0o644))
	must(t, os.WriteFile(filepath.Join(etc, "edge-home.yaml"), []byte(edgeYAML), 0o644))

	c := bootContainer(t, map[string]string{binDir: "/opt/unmap", etc: "/etc/unmap"})

	// The relay's external interface and the edge's LAN and WAN, made
	// in the container's network namespace (both ends of each veth).
	ns, err := netns.GetFromPid(c.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	for _, l := range []struct{ name, addr string }{{"eth0", "198.51.100.6/24"}, {"lan0", "192.0.2.1/28"}, {"wan0", "100.64.0.2/24"}} {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.name}, PeerName: l.name + "p", PeerNamespace: netlink.NsFd(ns)}
		must(t, nl.LinkAdd(veth))
		a, err := netlink.ParseAddr(l.addr)
		must(t, err)
		for _, n := range []string{l.name, l.name + "p"} {
			link, err := nl.LinkByName(n)
			must(t, err)
			must(t, nl.LinkSetUp(link))
			if n == l.name {
				must(t, nl.AddrAdd(link, a))
			}
		}
	}

	// nspawn gives the container a /sys without fs/bpf (a host always
	// has the folder); unmap-bpffs.service mounts bpffs on it.
	c.must(nil, "sh", "-c", "mount -o remount,rw /sys && mkdir -p /sys/fs/bpf && mount -o remount,ro /sys")
	// The units as packaged, but for the binary's path. Written after
	// boot: at first boot systemd would enable and start them itself.
	for p, e := range d.data {
		if strings.HasPrefix(p, unitDir+"/") {
			text := strings.ReplaceAll(string(e.data), "/usr/bin/unmap", "/opt/unmap/unmap")
			c.must([]byte(text), "sh", "-c", "cat > /etc/systemd/system/"+filepath.Base(p))
		}
	}
	// The units want network-online.target; in a container with no
	// configured network its wait-online services would wait two minutes.
	c.must(nil, "systemctl", "mask", "--runtime", "systemd-networkd-wait-online.service", "NetworkManager-wait-online.service")
	c.must(nil, "systemctl", "daemon-reload")

	c.must(nil, "systemctl", "start", "unmap-relay.service", "unmap-edge.service")
	c.waitJournal("unmap-relay.service", `msg="relay listening"`, 30*time.Second)
	c.waitJournal("unmap-edge.service", `msg="session up"`, 30*time.Second)
	if out := c.must(nil, "mountpoint", "/sys/fs/bpf"); !strings.Contains(out, "is a mountpoint") {
		t.Errorf("unmap-bpffs did not mount /sys/fs/bpf: %s", out)
	}

	// The sandbox is really on: no new privileges, a system call filter,
	// no capability outside the unit's set.
	for _, u := range []struct {
		unit string
		caps []string
	}{
		{"unmap-relay.service", []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE"}},
		{"unmap-edge.service", []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SETPCAP"}},
	} {
		pid := strings.TrimSpace(c.must(nil, "systemctl", "show", "-p", "MainPID", "--value", u.unit))
		status := c.must(nil, "cat", "/proc/"+pid+"/status")
		for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(status, want) {
				t.Errorf("%s: /proc/%s/status lacks %q", u.unit, pid, want)
			}
		}
		if bnd := field(status, "CapBnd"); bnd&^capMask(u.caps) != 0 {
			t.Errorf("%s: bounding set %x has capabilities outside %v", u.unit, bnd, u.caps)
		}
	}

	// A restarted relay takes back the link and maps it pinned: the pins
	// were written through the sandbox.
	c.must(nil, "systemctl", "restart", "unmap-relay.service")
	c.waitJournal("unmap-relay.service", "mode=kept", 30*time.Second)

	// A second edge from the template: its own file and status socket;
	// stopping the plain edge first (one site, one agent).
	c.must(nil, "systemctl", "stop", "unmap-edge.service")
	c.must(nil, "systemctl", "start", "unmap-edge@home.service")
	c.waitJournal("unmap-edge@home.service", `msg="session up"`, 30*time.Second)
	out := c.must(nil, "/opt/unmap/unmap", "status", "--socket", "/run/unmap/edge-home.sock")
	if !strings.HasPrefix(out, "edge "+testVersion) {
		t.Errorf("unmap status of unmap-edge@home:\n%s", out)
	}
	// Stopping the relay keeps /run/unmap, so the edge's socket stays.
	c.must(nil, "systemctl", "stop", "unmap-relay.service")
	if _, err := c.exec(nil, "test", "-S", "/run/unmap/edge-home.sock"); err != nil {
		t.Errorf("stopping the relay removed the edge's status socket")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// field reads a hexadecimal field of /proc/<pid>/status.
func field(status, name string) uint64 {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return ^uint64(0)
}

var capNumbers = map[string]uint{
	"CAP_NET_BIND_SERVICE": 10, "CAP_SETPCAP": 8, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
	"CAP_PERFMON": 38, "CAP_BPF": 39,
}

func capMask(caps []string) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << capNumbers[c]
	}
	return m
}
