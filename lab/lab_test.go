package lab

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/test/priv"
	"github.com/vishvananda/netlink"
)

func rootLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("root links: %v", err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir(NetnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestBuildTeardown builds and tears down 20 labs in a row and checks that
// nothing is left: no namespace names, no links in the root namespace, no
// file descriptors (an fd held on a namespace keeps it alive unseen).
func TestBuildTeardown(t *testing.T) {
	priv.Require(t)
	before := rootLinks(t)
	fds := openFDs(t)
	var prefixes []string
	start := time.Now()
	for i := range 20 {
		l, err := New(context.Background(), Options{CGNMode: CGNMode(i % 2)})
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		prefixes = append(prefixes, l.Prefix)
		if got := labNamespaces(t, l.Prefix+"-"); len(got) != len(Roles) {
			t.Errorf("build %d: %d namespaces %v, want %d", i, len(got), got, len(Roles))
		}
		if got := rootLinks(t); !slices.Equal(got, before) {
			t.Errorf("build %d: root namespace links %v, want %v", i, got, before)
		}
		if err := l.Close(); err != nil {
			t.Errorf("close %d: %v", i, err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second close %d: %v", i, err)
		}
	}
	t.Logf("20 builds and teardowns in %v", time.Since(start))
	for _, p := range prefixes {
		if got := labNamespaces(t, p+"-"); len(got) != 0 {
			t.Errorf("lab %s left namespaces %v", p, got)
		}
		if _, err := os.Stat(OwnerDir + "/" + p); !os.IsNotExist(err) {
			t.Errorf("lab %s left its owner file (stat: %v)", p, err)
		}
	}
	if got := rootLinks(t); !slices.Equal(got, before) {
		t.Errorf("root namespace links after: %v, before: %v", got, before)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open file descriptors: %d after, %d before", got, fds)
	}
	assertThreadsHome(t)
}

// TestNameInUse makes sure a lab never takes over, nor removes, a
// namespace name that exists already.
func TestNameInUse(t *testing.T) {
	l := newForTest(t, Options{})
	n := l.NS(LAN)
	if err := createNamed(n.Name); err == nil {
		t.Fatalf("created %s over an existing namespace", n.Name)
	}
	if _, err := os.Stat(n.Path()); err != nil {
		t.Fatalf("existing namespace gone: %v", err)
	}
	if _, err := n.Output(context.Background(), "true"); err != nil {
		t.Errorf("existing namespace unusable: %v", err)
	}
	if got := nsInode(t, n.Path()); got == rootNS {
		t.Errorf("%s is the root namespace now", n.Path())
	}
	assertThreadsHome(t)
}

// TestFailedBuildCleansUp fails a build after each step in turn, and once
// before it starts, and checks that nothing is left.
func TestFailedBuildCleansUp(t *testing.T) {
	priv.Require(t)
	before := rootLinks(t)
	fds := openFDs(t)
	defer func() { afterBuildStep = nil }()
	for _, failAt := range []string{"namespaces", "wires", "routes", "nat"} {
		afterBuildStep = func(step string) error {
			if step == failAt {
				return errors.New("injected failure")
			}
			return nil
		}
		l, err := New(context.Background(), Options{})
		if err == nil {
			l.Close()
			t.Fatalf("build failing at %s succeeded", failAt)
		}
		if !strings.Contains(err.Error(), failAt+": injected failure") {
			t.Errorf("failing at %s: %v", failAt, err)
		}
	}
	afterBuildStep = nil
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(ctx, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("build with a cancelled context: %v", err)
	}
	if los, err := Leftovers(); err != nil {
		t.Fatal(err)
	} else {
		for _, lo := range los {
			if lo.Ownership == InUse && lo.Owner == os.Getpid() {
				t.Errorf("failed build left %s: %v", lo.Prefix, lo.Namespaces)
			}
		}
	}
	ents, _ := os.ReadDir(OwnerDir)
	for _, e := range ents {
		if b, _ := os.ReadFile(OwnerDir + "/" + e.Name()); strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
			t.Errorf("failed build left owner file %s", e.Name())
		}
	}
	if got := rootLinks(t); !slices.Equal(got, before) {
		t.Errorf("root namespace links after: %v, before: %v", got, before)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open file descriptors: %d after, %d before", got, fds)
	}
	assertThreadsHome(t)
}

// TestInterfaces compares the plan Interfaces reports with what the
// kernel has in every namespace.
func TestInterfaces(t *testing.T) {
	l := newForTest(t, Options{})
	for _, r := range Roles {
		nl := l.NS(r).Netlink()
		for _, in := range Interfaces(r) {
			link, err := nl.LinkByName(in.Name)
			if err != nil {
				t.Errorf("%s: %s: %v", r, in.Name, err)
				continue
			}
			if link.Attrs().MTU != in.MTU || link.Attrs().OperState != netlink.OperUp {
				t.Errorf("%s: %s: mtu %d state %v, want %d and up", r, in.Name, link.Attrs().MTU, link.Attrs().OperState, in.MTU)
			}
			addrs, err := nl.AddrList(link, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range addrs {
				if !a.IP.IsLinkLocalUnicast() {
					got = append(got, a.IPNet.String())
				}
			}
			var want []string
			for _, p := range in.Addrs {
				want = append(want, p.String())
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s: addresses %v, want %v", r, in.Name, got, want)
			}
		}
	}
	if got := Interfaces(Edge); len(got) != 2 || got[0].Name != string(LAN) || got[1].Name != string(CGN) {
		t.Errorf("edge interfaces %+v, want lan and cgn", got)
	}
}
