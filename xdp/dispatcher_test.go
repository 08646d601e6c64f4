package xdp

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// holdInDispatcher attaches each program (generic mode) to a veth
// interface of a network namespace of its own, until the test ends.
// BPF_PROG_RUN puts an XDP program into the kernel's XDP dispatcher and
// takes it out again after every call, waiting for an RCU grace period
// each time; on a loaded machine those waits take far longer than the
// runs measured (a Breakdown run took over 15 minutes). A program
// attached somewhere stays in the dispatcher, so the calls skip them.
// The figures do not change: the wait is outside the measured runs.
func holdInDispatcher(tb testing.TB, progs ...*ebpf.Program) {
	tb.Helper()
	var (
		links []link.Link
		nsh   netns.NsHandle = -1
	)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: it dies with the goroutine, so it
		// never returns to the pool in the namespace.
		errc <- func() error {
			orig, err := netns.Get()
			if err != nil {
				return err
			}
			defer orig.Close()
			ns, err := netns.New()
			if err != nil {
				return err
			}
			// Its interfaces do not keep a namespace alive: its handle
			// does, until the test's end.
			nsh = ns
			defer netns.Set(orig)
			seen := map[*ebpf.Program]bool{}
			for i, p := range progs {
				if seen[p] {
					continue
				}
				seen[p] = true
				name := fmt.Sprintf("bench%d", i)
				if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
					return err
				}
				l, err := netlink.LinkByName(name)
				if err != nil {
					return err
				}
				xl, err := link.AttachXDP(link.XDPOptions{Program: p, Interface: l.Attrs().Index, Flags: link.XDPGenericMode})
				if err != nil {
					return fmt.Errorf("attach to %s: %w", name, err)
				}
				links = append(links, xl)
			}
			return nil
		}()
	}()
	err := <-errc
	tb.Cleanup(func() {
		for _, l := range links {
			l.Close()
		}
		if nsh != -1 {
			nsh.Close() // the namespace goes, and its interfaces with it
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
}
