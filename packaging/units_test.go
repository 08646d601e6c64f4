package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/test/priv"
)

// systemdAnalyze finds systemd-analyze, or skips (fails under
// UNMAP_REQUIRE_PRIV=1) naming the Debian package that has it.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err == nil {
		return p
	}
	if priv.Required() {
		t.Fatalf("systemd-analyze not found and %s=1 forbids skipping: apt-get install systemd", priv.EnvRequire)
	}
	t.Skip("systemd-analyze not found: apt-get install systemd (Debian's systemd package) to check the units")
	return ""
}

// unpackUnits writes the packaged units into a folder for systemd-analyze,
// with ExecStart pointing at the packaged binary unpacked beside them
// (verify checks that the command exists), and the packaged man pages in
// a MANPATH (verify checks the Documentation= pages exist). It returns
// the folder and the MANPATH.
func unpackUnits(t *testing.T, d *debPkg) (string, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "unmap")
	if err := os.WriteFile(bin, d.data["/usr/bin/unmap"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	man := filepath.Join(dir, "man")
	if err := os.MkdirAll(filepath.Join(man, "man8"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, e := range d.data {
		switch {
		case strings.HasPrefix(p, unitDir+"/"):
			text := strings.ReplaceAll(string(e.data), "/usr/bin/unmap", bin)
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(p, "/usr/share/man/man8/") && strings.HasSuffix(p, ".8.gz"):
			zr, err := gzip.NewReader(bytes.NewReader(e.data))
			if err != nil {
				t.Fatal(err)
			}
			page, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(man, "man8", strings.TrimSuffix(filepath.Base(p), ".gz")), page, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir, man
}

// verifyUnits runs systemd-analyze verify. It exits 0 on lines it
// ignores (an unknown or misspelt setting, a bad value), so any output
// is a failure too.
func verifyUnits(analyze, manpath string, units ...string) (string, error) {
	cmd := exec.Command(analyze, append([]string{"verify"}, units...)...)
	cmd.Env = append(os.Environ(), "MANPATH="+manpath, "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err == nil && len(bytes.TrimSpace(out)) > 0 {
		err = errors.New("exit status 0, but it printed warnings")
	}
	return string(out), err
}

// TestUnitsVerify runs systemd-analyze verify on the packaged units as
// systemd would load them: the relay, the edge, and an instance of the
// edge template. A unit systemd would warn about fails the test.
func TestUnitsVerify(t *testing.T) {
	analyze := systemdAnalyze(t)
	_, d := builtPackage(t)
	dir, man := unpackUnits(t, d)
	units := []string{
		filepath.Join(dir, "unmap-relay.service"),
		filepath.Join(dir, "unmap-edge.service"),
		filepath.Join(dir, "unmap-edge@home.service"), // from unmap-edge@.service
		filepath.Join(dir, "unmap-bpffs.service"),
	}
	if out, err := verifyUnits(analyze, man, units...); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The check itself: a value systemd ignores is caught.
	bad := filepath.Join(dir, "unmap-bad.service")
	text, _ := os.ReadFile(filepath.Join(dir, "unmap-relay.service"))
	if err := os.WriteFile(bad, bytes.Replace(text, []byte("ProtectHome=yes"), []byte("ProtectHome=bogus"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := verifyUnits(analyze, man, bad); err == nil {
		t.Errorf("systemd-analyze verify passed a unit with ProtectHome=bogus:\n%s", out)
	}
}

// TestUnitsSecurity runs systemd-analyze security on the packaged units
// and holds them to an overall exposure of 3.0 ("OK") at most: 2.6 when
// written (root with a bounded capability set, the host's network, which
// an XDP agent needs). unmap-bpffs.service is left out: a oneshot mount
// that must not be sandboxed.
func TestUnitsSecurity(t *testing.T) {
	analyze := systemdAnalyze(t)
	_, d := builtPackage(t)
	dir, _ := unpackUnits(t, d)
	for _, u := range []string{"unmap-relay.service", "unmap-edge.service", "unmap-edge@home.service"} {
		cmd := exec.Command(analyze, "security", "--offline=yes", "--threshold=30", "--no-pager", filepath.Join(dir, u))
		cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err != nil {
			t.Errorf("%s: exposure over 3.0 (or systemd-analyze failed: %v):\n%s", u, err, out)
			continue
		}
		t.Logf("%s", lines[len(lines)-1])
	}
}
