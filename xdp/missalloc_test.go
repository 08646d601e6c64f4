package xdp

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestMissReadAllocates: reading a miss costs one allocation, the miss's
// own copy of its bytes, which the slow path holds while the flow opens;
// the ring's record is read into a buffer the reader reuses.
func TestMissReadAllocates(t *testing.T) {
	h := newHarness(t)
	in := xlattest.Build(xlattest.Spec{Proto: 17, Src: xlattest.SiteHost, SPort: 41000, Dst: xlattest.Remote6, DPort: 53, Payload: make([]byte, 100)})
	const n = 200
	for range n {
		if _, err := h.edge.Program(xlat.RoleEdgeLAN).Run(&ebpf.RunOptions{Data: in}); err != nil {
			t.Fatal(err)
		}
	}
	var bad error
	allocs := testing.AllocsPerRun(n/2, func() {
		m, err := h.edgeM.Read()
		if err != nil || len(m.Data) != len(in) {
			bad = err
		}
	})
	if bad != nil {
		t.Fatal(bad)
	}
	if allocs > 1 {
		t.Errorf("%.1f allocations a miss read, want 1", allocs)
	}
}
