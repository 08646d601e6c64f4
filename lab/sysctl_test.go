package lab

import (
	"os"
	"strings"
	"testing"
	"time"
)

func readRootSysctl(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestCGNUDPTimeout sets the CGN's conntrack UDP timeouts and reads them
// back: set in cgn, untouched in another lab namespace and in the root
// namespace.
func TestCGNUDPTimeout(t *testing.T) {
	keys := []string{"net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream"}
	const want = "17" // a value no kernel default has
	rootBefore := map[string]string{}
	for _, k := range keys {
		rootBefore[k] = readRootSysctl(t, k)
		if rootBefore[k] == want {
			t.Fatalf("root namespace already has %s=%s: the test could not tell", k, want)
		}
	}
	l := newForTest(t, Options{CGNUDPTimeout: 17 * time.Second})
	for _, k := range keys {
		got, err := l.NS(CGN).Sysctl(k)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("cgn %s = %s, want %s", k, got, want)
		}
		other, err := l.NS(Edge).Sysctl(k)
		if err != nil {
			t.Fatal(err)
		}
		if other == want {
			t.Errorf("edge %s = %s: the setting leaked out of cgn", k, other)
		}
		if got := readRootSysctl(t, k); got != rootBefore[k] {
			t.Errorf("root %s changed from %s to %s", k, rootBefore[k], got)
		}
	}
}

// TestForwardingSysctls checks that routers forward and hosts do not.
func TestForwardingSysctls(t *testing.T) {
	l := newForTest(t, Options{})
	for _, r := range Roles {
		f := forwarders[r]
		for key, want := range map[string]bool{"net.ipv4.ip_forward": f.v4, "net.ipv6.conf.all.forwarding": f.v6} {
			got, err := l.NS(r).Sysctl(key)
			if err != nil {
				t.Fatal(err)
			}
			if (got == "1") != want {
				t.Errorf("%s: %s = %s, want forwarding %v", r, key, got, want)
			}
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		err  string
	}{
		{Options{}, ""},
		{Options{CGNMode: CGNRandom, CGNUDPTimeout: 30 * time.Second}, ""},
		{Options{CGNMode: 7}, "lab options: CGNMode: CGNMode(7) is not preserve or random"},
		{Options{CGNUDPTimeout: 1500 * time.Millisecond}, "lab options: CGNUDPTimeout: 1.5s is not a whole, non-negative number of seconds"},
		{Options{CGNUDPTimeout: -time.Second}, "lab options: CGNUDPTimeout: -1s is not a whole, non-negative number of seconds"},
	} {
		err := tc.opts.Validate()
		if got := errString(err); got != tc.err {
			t.Errorf("%+v: error %q, want %q", tc.opts, got, tc.err)
		}
	}
}

func TestParseCGNMode(t *testing.T) {
	for _, m := range []CGNMode{CGNPreserve, CGNRandom} {
		got, err := ParseCGNMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseCGNMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseCGNMode("endpoint-dependent"); err == nil {
		t.Error("ParseCGNMode accepted an unknown mode")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
