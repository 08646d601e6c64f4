package ifcheck

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/labtest"
	"github.com/unmap-dev/unmap/xdp"
)

// TestCheck makes veth pairs in a lab's namespaces, as the kernel makes
// them (TX checksum offload on, no XDP program), one with its peer in the
// same namespace and one with its peer in another, and checks that Check
// finds both problems on each, naming the peer and the fix; then fixes
// the peers as OPERATING.md says (offload off, a pass program) and
// checks that nothing is found. A loopback is not a veth: nothing to say.
func TestCheck(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	sub, srv4 := l.NS(lab.Sub), l.NS(lab.Srv4)
	pairs := []struct {
		name, peer string
		peerNS     *lab.NS
	}{
		{"uc-same", "uc-same-p", sub},
		{"uc-other", "uc-other-p", srv4},
	}
	for _, p := range pairs {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.name}, PeerName: p.peer,
			PeerNamespace: netlink.NsFd(int(p.peerNS.Handle()))}
		if err := sub.Netlink().LinkAdd(v); err != nil {
			t.Fatalf("veth %s: %v", p.name, err)
		}
	}
	check := func(ifname string) []Finding {
		t.Helper()
		var fs []Finding
		err := sub.Do(func() (err error) {
			fs, err = Check(ifname)
			return err
		})
		if err != nil {
			t.Fatalf("Check(%s): %v", ifname, err)
		}
		return fs
	}

	for _, p := range pairs {
		fs := check(p.name)
		for _, f := range fs {
			t.Logf("%s: %s; fix: %s", f.Interface, f.Problem, f.Fix)
		}
		if len(fs) != 2 {
			t.Fatalf("%s, peer as made: %d findings, want 2 (no XDP, TX checksum on): %+v", p.name, len(fs), fs)
		}
		for i, want := range []string{"has no XDP program", "has TX checksum offload on"} {
			f := fs[i]
			if f.Interface != p.name || !strings.Contains(f.Problem, "peer "+p.peer) || !strings.Contains(f.Problem, want) || !strings.Contains(f.Fix, p.peer) {
				t.Errorf("%s finding %d: %+v, want %q about %s", p.name, i, f, want, p.peer)
			}
		}
		if p.peerNS != sub && !strings.Contains(fs[0].Problem, p.peerNS.Path()) {
			t.Errorf("%s: the finding does not name the peer's namespace %s: %s", p.name, p.peerNS.Path(), fs[0].Problem)
		}
	}

	for _, p := range pairs {
		if _, err := p.peerNS.Ethtool(p.peer, [2]uint32{lab.EthtoolSTXCSUM, 0}); err != nil {
			t.Fatal(err)
		}
		err := p.peerNS.Do(func() error {
			ifi, err := net.InterfaceByName(p.peer)
			if err != nil {
				return err
			}
			pass, err := xdp.AttachPass(ifi.Index)
			if err != nil {
				return err
			}
			t.Cleanup(func() { pass.Close() })
			return nil
		})
		if err != nil {
			t.Fatalf("pass program on %s: %v", p.peer, err)
		}
		if fs := check(p.name); len(fs) != 0 {
			t.Errorf("%s, peer fixed: %+v", p.name, fs)
		}
	}
	if fs := check("lo"); len(fs) != 0 {
		t.Errorf("lo: %+v", fs)
	}
}

// TestWarn: each finding is one warning carrying the interface and the
// fix.
func TestWarn(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	sub := l.NS(lab.Sub)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uw"}, PeerName: "uw-p"}
	if err := sub.Netlink().LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	if err := sub.Do(func() error { Warn(log, "uw", "no-such-if"); return nil }); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 warnings:\n%s", len(lines), b.String())
	}
	for _, line := range lines {
		if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "if=uw") || !strings.Contains(line, "fix=") {
			t.Errorf("warning without interface or fix: %s", line)
		}
	}
}
