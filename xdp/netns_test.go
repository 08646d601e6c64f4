package xdp

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetns runs f on a locked thread inside a fresh network namespace
// that is destroyed afterwards (even when f fails the test).
func inNetns(t testing.TB, f func(h *netlink.Handle)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is not unlocked: it dies with the goroutine, so it
		// never returns to the pool in the test namespace.
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer func() {
			netns.Set(orig)
			ns.Close()
		}()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Error(err)
			return
		}
		defer h.Close()
		f(h)
	}()
	<-done
}

// sysctl writes a value under /proc/sys for the calling thread's namespace.
func sysctl(t testing.TB, path, v string) {
	t.Helper()
	// /proc/sys/net resolves to the namespace of the thread that opens it.
	if err := os.WriteFile("/proc/sys/"+path, []byte(v), 0o644); err != nil {
		t.Errorf("sysctl %s: %v", path, err)
	}
}

// veth makes a veth pair, both up, and returns them.
func veth(t testing.TB, h *netlink.Handle, a, b string) (netlink.Link, netlink.Link) {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	la, err := h.LinkByName(a)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := h.LinkByName(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{la, lb} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return la, lb
}

func addAddr(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = 0x80 // IFA_F_NODAD: usable at once
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("addr %s: %v", cidr, err)
	}
}

func addNeigh(t *testing.T, h *netlink.Handle, l netlink.Link, ip string, mac net.HardwareAddr) {
	t.Helper()
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP(ip), HardwareAddr: mac}
	if err := h.NeighAdd(n); err != nil {
		t.Fatalf("neigh %s: %v", ip, err)
	}
}

func addRoute(t *testing.T, h *netlink.Handle, l netlink.Link, dst, via string) {
	t.Helper()
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: n, Gw: net.ParseIP(via)}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("route %s via %s: %v", dst, via, err)
	}
}
