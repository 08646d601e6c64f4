package ports

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/unmap-dev/unmap/test/priv"
)

// TestReserveInNetns reserves a carrier range in a namespace of its own
// (never the root one) and checks the kernel then skips it: a socket
// bound to port 0 never gets a reserved port.
func TestReserveInNetns(t *testing.T) {
	priv.Require(t)
	// The thread stays locked: when the test goroutine ends, the runtime
	// retires it rather than reuse a thread that was in another namespace.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also moves this thread into it
	if err != nil {
		priv.Unsupported(t, err)
	}
	defer ns.Close()
	defer netns.Set(orig)

	eph, err := Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	r := Range{eph.First, eph.Last - 8}
	if err := CheckReserved(r); err == nil {
		t.Fatal("CheckReserved passed an unreserved range inside the ephemeral one")
	}
	if err := CheckReserved(Range{eph.First - 10, eph.First - 1}); err != nil {
		t.Fatalf("range below the ephemeral one: %v", err)
	}
	// Reserve all but the last 8 ephemeral ports, with an existing entry to keep.
	if err := writeReserved("8080"); err != nil {
		t.Fatal(err)
	}
	if err := Reserve(r); err != nil {
		t.Fatal(err)
	}
	got, err := Reserved()
	if err != nil {
		t.Fatal(err)
	}
	if !Covered(got, r) || !Covered(got, Range{8080, 8080}) {
		t.Fatalf("reserved %v, want %v and 8080", got, r)
	}
	if err := Reserve(r); err != nil { // already covered: no change
		t.Fatal(err)
	}
	if err := CheckReserved(r); err != nil {
		t.Fatalf("after Reserve: %v", err)
	}
	for range 32 {
		port, closeFn, err := bindAny()
		if err != nil {
			t.Fatal(err)
		}
		closeFn()
		if r.Contains(port) {
			t.Fatalf("kernel picked reserved port %d", port)
		}
	}
}
