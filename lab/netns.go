package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, the place
// `ip netns` and `nsenter --net=` look for them.
const NetnsDir = "/run/netns"

// NS is one namespace of a lab. Its methods run code, commands, servers
// and captures inside it; none of them ever moves a thread of the caller.
type NS struct {
	Role Role   // what the namespace plays in the topology
	Name string // full name under NetnsDir, e.g. unmap-1a2b3c-edge

	handle netns.NsHandle  // open fd on the namespace: keeps it reachable
	nl     *netlink.Handle // netlink socket living inside the namespace
	mu     sync.Mutex      // guards closers
	closer []func() error  // servers and captures opened in this namespace
}

// Path is the bind mount of the namespace, for nsenter --net=PATH.
func (n *NS) Path() string { return filepath.Join(NetnsDir, n.Name) }

// Netlink is a netlink handle bound to the namespace: links, addresses
// and routes changed through it stay inside the namespace.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

// Handle is an open file descriptor of the namespace (for setns, or for
// libraries that take a netns fd). It stays valid until the lab closes.
func (n *NS) Handle() netns.NsHandle { return n.handle }

// Do runs fn on an OS thread that has entered the namespace, and waits for
// it. Only the goroutine running fn is in the namespace: goroutines it
// starts are not. Sockets fn creates stay in the namespace for their whole
// life, so a listener or connection made in Do can be used anywhere after.
//
// The thread goes back to its original namespace afterwards; if that fails
// it stays locked when the goroutine exits, and the runtime ends it (or,
// for the main thread, parks it for good), so no Go code ever runs again
// on a thread left in the wrong namespace.
//
// Do must not race with Lab.Close.
func (n *NS) Do(fn func() error) error {
	if n.handle == netns.None() {
		return fmt.Errorf("namespace %s is closed", n.Name)
	}
	orig, err := homeNS()
	if err != nil {
		return err
	}
	return onLockedThread(func() (restored bool, err error) {
		if err := netns.Set(n.handle); err != nil {
			return true, fmt.Errorf("enter namespace %s: %w", n.Name, err)
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", n.Name, err))
		}
		return true, ferr
	})
}

// homeNS is the namespace every unlocked thread of the process is in: the
// one a fresh goroutine's thread has before Do moves it, and where Do puts
// it back. Opened once: opening it costs more than the two setns calls.
var homeNS = sync.OnceValues(func() (netns.NsHandle, error) {
	var h netns.NsHandle
	err := onLockedThread(func() (bool, error) {
		var err error
		h, err = netns.Get()
		return true, err
	})
	if err != nil {
		return netns.None(), fmt.Errorf("get current namespace: %w", err)
	}
	return h, nil
})

// onLockedThread runs fn on a fresh goroutine locked to its OS thread. The
// thread is released only when fn reports that it restored the thread's
// state; otherwise the goroutine exits locked and the runtime ends the
// thread rather than reuse it.
func onLockedThread(fn func() (restored bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := fn()
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// createNamed makes a new network namespace bind-mounted at NetnsDir/name,
// as `ip netns add` does. The name is claimed first (O_EXCL), so a name in
// use is an error and is never touched. Unsharing moves the creating
// thread into the new namespace, so the thread goes back to where it was
// before it is released. (Letting it die instead is not enough: when the
// goroutine happens to run on the main thread, the runtime parks that
// thread forever rather than end it, and it would pin the namespace.)
func createNamed(name string) error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	f.Close()
	orig, err := homeNS()
	if err != nil {
		return err
	}
	err = onLockedThread(func() (bool, error) {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return true, fmt.Errorf("unshare: %w", err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		err = unix.Mount(self, path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind mount: %w", err)
		}
		if serr := netns.Set(orig); serr != nil {
			return false, errors.Join(err, fmt.Errorf("leave new namespace: %w", serr))
		}
		return true, err
	})
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// openNS opens the handles the lab keeps on a named namespace.
func openNS(role Role, name string) (*NS, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	return &NS{Role: role, Name: name, handle: h, nl: nl}, nil
}

// track registers a closer to run when the namespace is torn down: a
// socket left open would keep the kernel namespace alive after its name
// is gone.
func (n *NS) track(c func() error) {
	n.mu.Lock()
	n.closer = append(n.closer, c)
	n.mu.Unlock()
}

// close releases everything the lab holds in the namespace and removes
// its name; the kernel frees the namespace, and its veths, once the last
// reference is gone.
func (n *NS) close() error {
	n.mu.Lock()
	closers := n.closer
	n.closer = nil
	n.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		// Closing twice is the caller's business; only report new failures.
		if err := closers[i](); err != nil && !errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.handle != netns.None() {
		n.handle.Close()
		n.handle = netns.None()
	}
	if err := deleteNamed(n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteNamed unmounts and removes a namespace's name; a name already
// gone is not an error.
func deleteNamed(name string) error {
	err := netns.DeleteNamed(name)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// A mount point whose mount is gone (a crashed build) still has a file.
	if rerr := os.Remove(filepath.Join(NetnsDir, name)); rerr == nil || errors.Is(rerr, os.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("delete namespace %s: %w", name, err)
}
