package bench

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/test/priv"
)

// BenchmarkDatapath reports ns/packet for every path (BPF_PROG_RUN, 10M
// runs each) and the cost over the empty-program baseline of the same run.
func BenchmarkDatapath(b *testing.B) {
	priv.Require(b)
	for b.Loop() {
		res, err := XDP(context.Background(), 10_000_000)
		if err != nil {
			b.Fatal(err)
		}
		base := res[0].PerPkt
		for _, r := range res {
			name := strings.NewReplacer(" ", "_", ":", "", "<->", "-", "(", "", ")", "").Replace(r.Path)
			b.ReportMetric(float64(r.PerPkt.Nanoseconds()), name+"-ns/pkt")
			if r.PerPkt != base {
				b.ReportMetric(float64((r.PerPkt - base).Nanoseconds()), name+"-ns-over-baseline")
			}
		}
	}
}

// TestXDPPathsTranslate: the benchmark packets really take the paths
// they are named for (a few runs, checked by verdict and counters).
func TestXDPPathsTranslate(t *testing.T) {
	priv.Require(t)
	res, err := XDP(context.Background(), xdpbench.Batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) < 8 {
		t.Fatalf("%d paths", len(res))
	}
	for _, r := range res {
		want, reason := xlat.Pass, xlat.ReasonNone
		switch {
		case strings.HasPrefix(r.Path, "miss over"):
			want, reason = xlat.Drop, xlat.ReasonDropMissRate
		case strings.HasPrefix(r.Path, "miss"):
			want, reason = xlat.Drop, xlat.ReasonMiss
		case strings.HasPrefix(r.Path, "pass"):
			reason = xlat.ReasonPassNotOurs
		}
		if r.Verdict != want || r.Repeats < xdpbench.Batch || r.PerPkt <= 0 {
			t.Errorf("%s: verdict %v after %d runs, %v/pkt", r.Path, r.Verdict, r.Repeats, r.PerPkt)
		}
		// The round means a report shows as spread: the figure is one of them.
		if len(r.Rounds) == 0 || !slices.Contains(r.Rounds, r.PerPkt) {
			t.Errorf("%s: %v/pkt is not one of its round means %v", r.Path, r.PerPkt, r.Rounds)
		}
		switch {
		case strings.HasPrefix(r.Path, "baseline"), strings.HasPrefix(r.Path, "floor"), reason == xlat.ReasonNone:
			if len(r.Reasons) != 0 {
				t.Errorf("%s: not every run translated: %v", r.Path, r.Reasons)
			}
		case r.Reasons[reason] != uint64(r.Repeats) || len(r.Reasons) != 1:
			t.Errorf("%s: reasons %v, want %d x %v", r.Path, r.Reasons, r.Repeats, reason)
		}
	}
}

// TestXDPStopsWhenCancelled: a cancelled context (SIGTERM or Ctrl-C in
// `unmap bench xdp`) ends the run at the next path's turn with the
// context's error, instead of running every round.
func TestXDPStopsWhenCancelled(t *testing.T) {
	priv.Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	turns := 0
	_, err := XDPProgress(ctx, 2*xdpbench.Batch*xdpbench.Rounds, func(round, rounds int, path string) {
		if turns++; turns == 3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || turns != 3 {
		t.Fatalf("after a cancel at the third turn: %d turns, %v", turns, err)
	}
}
