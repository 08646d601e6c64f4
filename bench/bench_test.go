package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/priv"
)

// TestShortRun runs the whole benchmark briefly: every path, both offload
// modes. It asserts that every figure was measured and that unmap lost
// no first packet of a new flow; never a speed.
func TestShortRun(t *testing.T) {
	priv.Require(t)
	cfg := Short()
	cfg.Unmap = lab.BuildUnmap(t)
	cfg.Log = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if rep != nil {
		var b strings.Builder
		_ = rep.WriteTable(&b)
		t.Logf("\n%s", b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Paths {
		for _, mode := range []Offloads{AsIs, Off} {
			for _, m := range Metrics {
				row, ok := rep.Find(p, mode, m)
				if !ok {
					t.Errorf("%s (%s): %s not measured", p, mode, m)
					continue
				}
				if m != FirstPacketLoss && row.Value <= 0 {
					t.Errorf("%s (%s): %s = %v", p, mode, m, row.Value)
				}
				if p != Native && m != FirstPacketLoss && row.Ratio <= 0 {
					t.Errorf("%s (%s): %s has no ratio to native", p, mode, m)
				}
			}
		}
	}
	for _, mode := range []Offloads{AsIs, Off} {
		if row, _ := rep.Find(Unmap, mode, FirstPacketLoss); row.Value != 0 {
			t.Errorf("unmap (%s): lost the first packet of %v of %d new flows", mode, row.Value, row.Of)
		}
	}
}

// BenchmarkLab runs the full benchmark once per iteration (run it with
// -benchtime 1x: about two minutes) and reports unmap's and
// wireguard-go's goodput as ratios to native, with the table in the log.
func BenchmarkLab(b *testing.B) {
	priv.Require(b)
	cfg := Config{Unmap: lab.BuildUnmap(b), Log: b.Logf}
	for b.Loop() {
		rep, err := Run(context.Background(), cfg)
		if rep != nil {
			var s strings.Builder
			_ = rep.WriteTable(&s)
			b.Logf("\n%s", s.String())
		}
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range []string{Unmap, WireGuard} {
			for _, mode := range []Offloads{AsIs, Off} {
				row, _ := rep.Find(p, mode, Goodput)
				unit := p + "-goodput-vs-native"
				if mode == Off {
					unit += "-offloads-off"
				}
				b.ReportMetric(row.Ratio, unit)
			}
		}
	}
}
