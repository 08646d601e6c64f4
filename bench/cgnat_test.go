package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/priv"
)

// TestCGNATShortRun runs the CGNAT bench briefly: every figure of both
// paths measured (the kernel's memory included), every frame that
// arrived translated (the bench fails on one that did not), a ratio for
// each rate, a profile of each path over each set and of both floors
// (the XDP programs' run times read). Never a speed threshold.
func TestCGNATShortRun(t *testing.T) {
	priv.Require(t)
	cfg := CGNATShort()
	cfg.Unmap = lab.BuildUnmap(t)
	cfg.Log = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := RunCGNAT(ctx, cfg)
	if res != nil {
		var b strings.Builder
		_ = res.WriteTable(&b)
		t.Logf("\n%s", b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{CGNATNew, CGNATPPSSmall, CGNATPPSSrv4, CGNATPPSLarge, CGNATMemory, CGNATGoodput} {
		row, ok := res.Find(m)
		if !ok {
			t.Errorf("%s not measured", m)
			continue
		}
		// The kernel's memory is the slab caches' growth, which other
		// work on the machine can hide at the short run's 20k entries.
		if row.Unmap <= 0 || (m != CGNATMemory && (row.Kernel <= 0 || row.Ratio() <= 0)) {
			t.Errorf("%s: unmap %v, kernel %v", m, row.Unmap, row.Kernel)
		}
	}
	if res.Floor <= 0 {
		t.Errorf("floor %v", res.Floor)
	}
	if len(res.Profile) != 6 {
		t.Errorf("%d profiles, want both paths over both sets and the two floors", len(res.Profile))
	}
	for _, pr := range res.Profile {
		if pr.WallNs <= 0 || pr.CPUNs <= 0 || pr.GenNs <= 0 || pr.CounterNs <= 0 || (pr.Path == CGNATKernel) != (pr.NATNs == 0) {
			t.Errorf("profile %+v", pr)
		}
	}
}
