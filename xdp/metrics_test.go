package xdp

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestReasonReader: the batch reader that /metrics uses reads the same
// per-CPU sums as Reasons after the programs counted every fixture's
// reason, and its allocations per read do not grow with the reasons
// (Reasons allocates once per reason).
func TestReasonReader(t *testing.T) {
	h := newHarness(t)
	for _, f := range xlattest.Fixtures() {
		d, _, _ := h.forRole(f.Role)
		in := append([]byte(nil), f.In...)
		if _, err := d.Program(f.Role).Run(&ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
	}
	for _, d := range []*Datapath{h.edge, h.relay} {
		want, err := d.Reasons()
		if err != nil {
			t.Fatal(err)
		}
		rr, err := d.NewReasonReader()
		if err != nil {
			t.Fatal(err)
		}
		var got [xlat.NumReasons]uint64
		if err := rr.Read(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("batch read %v, Reasons %v", got, want)
		}
		var moved int
		for _, n := range got {
			if n != 0 {
				moved++
			}
		}
		if moved < 3 {
			t.Errorf("only %d reasons counted: the fixtures did not run", moved)
		}
		allocs := testing.AllocsPerRun(20, func() { _ = rr.Read(&got) })
		if allocs >= float64(xlat.NumReasons)/2 {
			t.Errorf("a read allocates %.0f times for %d reasons", allocs, xlat.NumReasons)
		}
		t.Logf("batch read: %.0f allocations for %d reasons", allocs, xlat.NumReasons)
	}
}

// TestTableStats: the flow table's fill counts the ways a pair takes and
// gives back.
func TestTableStats(t *testing.T) {
	h := newHarness(t)
	d := h.edge
	before := d.TableStats()
	if before.Ways == 0 {
		t.Fatal("no ways")
	}
	ms, err := d.Mappings()
	if err != nil || len(ms) < 2 {
		t.Fatalf("mappings %d: %v", len(ms), err)
	}
	if err := d.Delete(ms[0].Key); err != nil {
		t.Fatal(err)
	}
	after := d.TableStats()
	if after.Used+after.Spilled != before.Used+before.Spilled-1 {
		t.Errorf("after a delete %+v, before %+v", after, before)
	}
	if err := d.Put(ms[0].Key, ms[0].Entry); err != nil {
		t.Fatal(err)
	}
	if again := d.TableStats(); again != before {
		t.Errorf("after putting it back %+v, before %+v", again, before)
	}
}
