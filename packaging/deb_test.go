package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

const testVersion = "0.0.1~test"

var built struct {
	once sync.Once
	path string
	deb  *debPkg
	err  error
}

// builtPackage builds the .deb once for all tests of this package, the
// way `go run ./packaging -version 0.0.1~test` does, and reads it back.
func builtPackage(t *testing.T) (string, *debPkg) {
	t.Helper()
	built.once.Do(func() {
		out, err := os.MkdirTemp("", "unmap-deb-test-")
		if err != nil {
			built.err = err
			return
		}
		built.path, built.err = build(context.Background(), options{out: out, version: testVersion, maintainer: defaultMaintainer})
		if built.err == nil {
			built.deb, built.err = readDeb(built.path)
		}
	})
	if built.err != nil {
		t.Fatalf("building the package: %v", built.err)
	}
	return built.path, built.deb
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// TestPackageContents builds the .deb from this checkout and checks what
// dpkg would install: the files and their modes, the conffiles, the
// control fields, the maintainer scripts, and that the configurations
// are the commented examples.
func TestPackageContents(t *testing.T) {
	path, d := builtPackage(t)
	wantName := "unmap_" + testVersion + "_" + debArch[runtime.GOARCH] + ".deb"
	if filepath.Base(path) != wantName {
		t.Errorf("file %s, want %s", filepath.Base(path), wantName)
	}
	if d.binary != "2.0\n" {
		t.Errorf("debian-binary %q", d.binary)
	}
	for field, want := range map[string]string{
		"Package":      "unmap",
		"Version":      testVersion,
		"Architecture": debArch[runtime.GOARCH],
		"Section":      "net",
		"Maintainer":   defaultMaintainer,
	} {
		if got := d.controlField(field); got != want {
			t.Errorf("control %s: %q, want %q", field, got, want)
		}
	}
	if got := string(d.control["/conffiles"].data); got != "/etc/unmap/edge.yaml\n/etc/unmap/relay.yaml\n" {
		t.Errorf("conffiles:\n%s", got)
	}
	for _, s := range []string{"/postinst", "/prerm", "/postrm"} {
		e, ok := d.control[s]
		if !ok || e.hdr.Mode&0o777 != 0o755 || !bytes.HasPrefix(e.data, []byte("#!/bin/sh\n")) {
			t.Errorf("maintainer script %s missing, not 0755 or not sh", s)
		}
	}

	want := map[string]int64{
		"/usr/bin/unmap":                                  0o755,
		"/etc/unmap/edge.yaml":                            0o644,
		"/etc/unmap/relay.yaml":                           0o644,
		unitDir + "/unmap-relay.service":                  0o644,
		unitDir + "/unmap-edge.service":                   0o644,
		unitDir + "/unmap-edge@.service":                  0o644,
		"/usr/share/man/man8/unmap.8.gz":                  0o644,
		"/usr/share/man/man8/unmap-edge.8.gz":             0o644,
		"/usr/share/man/man8/unmap-relay.8.gz":            0o644,
		"/usr/share/man/man8/unmap-status.8.gz":           0o644,
		"/usr/share/bash-completion/completions/unmap":    0o644,
		"/usr/share/zsh/vendor-completions/_unmap":        0o644,
		"/usr/share/fish/vendor_completions.d/unmap.fish": 0o644,
		"/usr/share/doc/unmap/OPERATING.md":               0o644,
		"/usr/share/doc/unmap/README.md":                  0o644,
		"/usr/share/doc/unmap/examples/relay-cgnat.yaml":  0o644,
		"/usr/share/unmap/grafana/unmap.json":             0o644,
	}
	for p, mode := range want {
		e, ok := d.data[p]
		if !ok {
			t.Errorf("%s not in the package", p)
			continue
		}
		if e.hdr.Mode&0o7777 != mode {
			t.Errorf("%s: mode %o, want %o", p, e.hdr.Mode&0o7777, mode)
		}
		if e.hdr.Uid != 0 || e.hdr.Gid != 0 {
			t.Errorf("%s: owned by %d:%d, want root", p, e.hdr.Uid, e.hdr.Gid)
		}
	}
	for p, e := range d.data {
		if e.hdr.Mode&0o7022 != 0 && e.hdr.Typeflag != '5' {
			t.Errorf("%s: mode %o is writable by others or setuid", p, e.hdr.Mode&0o7777)
		}
	}

	root := moduleRootT(t)
	for _, name := range []string{"edge.yaml", "relay.yaml"} {
		ex, err := os.ReadFile(filepath.Join(root, "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.data["/etc/unmap/"+name].data, ex) {
			t.Errorf("/etc/unmap/%s is not examples/%s", name, name)
		}
	}

	// The Grafana dashboard ships as the repository has it, for an
	// operator to import (OPERATING.md, metrics).
	dash, err := os.ReadFile(filepath.Join(root, "packaging", "grafana", "unmap.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.data["/usr/share/unmap/grafana/unmap.json"].data; !bytes.Equal(got, dash) || !json.Valid(got) {
		t.Errorf("/usr/share/unmap/grafana/unmap.json is not packaging/grafana/unmap.json (%d bytes, valid JSON %v)", len(got), json.Valid(got))
	}

	// Every page is a gzipped man page of its command.
	for p, e := range d.data {
		if !strings.HasPrefix(p, "/usr/share/man/man8/") || e.hdr.Typeflag == '5' {
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(e.data))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		page, _ := io.ReadAll(zr)
		cmd := strings.TrimSuffix(filepath.Base(p), ".8.gz")
		if !bytes.Contains(page, []byte(`.TH "`+strings.ToUpper(cmd)+`" "8" "`)) {
			t.Errorf("%s: no .TH header for %s in section 8", p, cmd)
		}
	}
}

// TestPackagedBinary runs the packaged binary: it reports the package's
// version and the commit it was built from, and it accepts the
// configurations the package installs.
func TestPackagedBinary(t *testing.T) {
	_, d := builtPackage(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "unmap")
	if err := os.WriteFile(bin, d.data["/usr/bin/unmap"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("unmap version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "unmap "+testVersion+"\n") {
		t.Errorf("unmap version does not start with the package version:\n%s", out)
	}
	if head, err := git(context.Background(), moduleRootT(t), "rev-parse", "HEAD"); err == nil {
		if !strings.Contains(string(out), "revision "+head) {
			t.Errorf("unmap version does not name the commit %s:\n%s", head, out)
		}
	} else {
		t.Logf("no git here (%v): the revision is not checked", err)
	}

	// --check opens the TLS files the configurations name under
	// /etc/unmap: issue them with the packaged binary, as OPERATING
	// tells an operator to, into a directory standing for /etc/unmap.
	etc := filepath.Join(dir, "etc")
	for _, args := range [][]string{
		{"cert", "ca", "--out", etc},
		{"cert", "relay", "--ca", etc, "--name", "relay.example.net", "--ip", "198.51.100.6", "--out", etc},
		{"cert", "edge", "--ca", etc, "--site", "home", "--out", etc},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("unmap %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, agent := range []string{"edge", "relay"} {
		conf := filepath.Join(dir, agent+".yaml")
		text := strings.ReplaceAll(string(d.data["/etc/unmap/"+agent+".yaml"].data), "/etc/unmap/", etc+"/")
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, agent, "-c", conf, "--check").CombinedOutput(); err != nil {
			t.Errorf("unmap %s --check on the packaged %s.yaml: %v\n%s", agent, agent, err, out)
		}
	}
}

// TestUnitHardening reads the packaged units and checks each sandboxing
// line an XDP agent can have is there, and the capabilities are the
// listed ones and no more. systemd-analyze checks them as systemd reads
// them (units_test.go).
func TestUnitHardening(t *testing.T) {
	_, d := builtPackage(t)
	// The capabilities the agents start with, as measured by
	// test/e2e's privilege tests: loading and attaching XDP (BPF,
	// PERFMON, NET_ADMIN), raw sockets for router advertisements and
	// ICMP (NET_RAW), dropping the rest after set-up (SETPCAP); the relay
	// also binds the control port 443. No SYS_ADMIN.
	agentCaps := []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SETPCAP"}
	for _, u := range []struct {
		name, exec string
		caps       []string
	}{
		{"unmap-relay.service", "/usr/bin/unmap relay -c /etc/unmap/relay.yaml", append(slices.Clone(agentCaps), "CAP_NET_BIND_SERVICE")},
		{"unmap-edge.service", "/usr/bin/unmap edge -c /etc/unmap/edge.yaml", agentCaps},
		{"unmap-edge@.service", "/usr/bin/unmap edge -c /etc/unmap/edge-%i.yaml --status-socket /run/unmap/edge-%i.sock", agentCaps},
	} {
		e, ok := d.data[unitDir+"/"+u.name]
		if !ok {
			t.Errorf("%s not packaged", u.name)
			continue
		}
		s := unitSettings(string(e.data))
		for k, want := range map[string]string{
			"ExecStart":                u.exec,
			"Restart":                  "on-failure",
			"NoNewPrivileges":          "yes",
			"ProtectSystem":            "strict",
			"ProtectHome":              "yes",
			"PrivateTmp":               "yes",
			"PrivateDevices":           "yes",
			"ProtectKernelModules":     "yes",
			"ProtectControlGroups":     "yes",
			"RestrictNamespaces":       "yes",
			"MemoryDenyWriteExecute":   "yes",
			"SystemCallArchitectures":  "native",
			"LimitMEMLOCK":             "infinity",
			"RuntimeDirectory":         "unmap",
			"RuntimeDirectoryPreserve": "yes",
			"Wants":                    "network-online.target unmap-bpffs.service",
			"WantedBy":                 "multi-user.target",
		} {
			if got := s[k]; got != want {
				t.Errorf("%s: %s=%q, want %q", u.name, k, got, want)
			}
		}
		// What ProtectKernelTunables= would do, but for the pins and the
		// agents' sysctls (systemd 252 keeps /sys/fs/bpf read-only under it).
		sameSet(t, u.name, "ReadWritePaths", s["ReadWritePaths"], []string{"-/sys/fs/bpf", "/proc/sys/net"})
		sameSet(t, u.name, "ReadOnlyPaths", s["ReadOnlyPaths"], []string{"/sys", "/proc/sys", "-/proc/sysrq-trigger", "-/proc/irq", "-/proc/bus", "-/proc/fs", "-/proc/acpi"})
		sameSet(t, u.name, "InaccessiblePaths", s["InaccessiblePaths"], []string{"-/proc/kcore", "-/proc/kallsyms"})
		if s["ProtectKernelTunables"] == "yes" {
			t.Errorf("%s: ProtectKernelTunables=yes makes the pins read-only", u.name)
		}
		sameSet(t, u.name, "RestrictAddressFamilies", s["RestrictAddressFamilies"], []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"})
		sameSet(t, u.name, "CapabilityBoundingSet", s["CapabilityBoundingSet"], u.caps)
		if !strings.Contains(s["SystemCallFilter"], "@system-service") {
			t.Errorf("%s: SystemCallFilter=%q does not start from @system-service", u.name, s["SystemCallFilter"])
		}
	}
}

func sameSet(t *testing.T, unit, key, got string, want []string) {
	t.Helper()
	g := strings.Fields(got)
	slices.Sort(g)
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s: %s=%q, want exactly %v", unit, key, got, want)
	}
}

func moduleRootT(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return root
}
