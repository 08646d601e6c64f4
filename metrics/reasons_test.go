package metrics

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unmap-dev/unmap/session/xlat"
)

// TestReasons: the collector sends one sample per reason with the sums
// read, labelled with the reason's name and action; a failed read fails
// the scrape of this metric only.
func TestReasons(t *testing.T) {
	var fail error
	r := NewReasons("relay", func(out *[xlat.NumReasons]uint64) error {
		for i := range out {
			out[i] = uint64(i) * 10
		}
		return fail
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	scrape := func() (string, int) {
		w := httptest.NewRecorder()
		Handler(reg).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		return w.Body.String(), w.Code
	}
	body, _ := scrape()
	for _, want := range []string{
		`unmap_datapath_packets_total{action="drop",agent="relay",reason="drop-miss-full"} 200`,
		`unmap_datapath_packets_total{action="agent",agent="relay",reason="miss"} 190`,
		`unmap_datapath_packets_total{action="pass",agent="relay",reason="pass-not-ours"} 30`,
		`unmap_datapath_packets_total{action="consume",agent="relay",reason="keepalive"} 210`,
		`unmap_datapath_packets_total{action="translate",agent="relay",reason="none"} 0`,
		fmt.Sprintf(`unmap_datapath_packets_total{action="answer",agent="relay",reason="cgnat-refused"} %d`, xlat.ReasonCGNATRefused*10),
		fmt.Sprintf(`unmap_datapath_packets_total{action="agent",agent="relay",reason="cgnat-no-block"} %d`, xlat.ReasonCGNATNoBlock*10),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	if n := strings.Count(body, "unmap_datapath_packets_total{"); n != int(xlat.NumReasons) {
		t.Errorf("%d samples, want %d", n, xlat.NumReasons)
	}
	fail = errors.New("map gone")
	if body, _ := scrape(); !strings.Contains(body, "map gone") {
		t.Errorf("a failed read not reported:\n%s", body)
	}
}

// TestReasonsCollectAllocs: a scrape's Collect reads into the
// collector's array and sends the metrics built once: no allocation, so
// none per reason.
func TestReasonsCollectAllocs(t *testing.T) {
	r := NewReasons("edge", func(out *[xlat.NumReasons]uint64) error { out[3]++; return nil })
	ch := make(chan prometheus.Metric, xlat.NumReasons)
	allocs := testing.AllocsPerRun(100, func() {
		r.Collect(ch)
		for range xlat.NumReasons {
			<-ch
		}
	})
	if allocs != 0 {
		t.Errorf("Collect allocates %.1f times a scrape, want 0", allocs)
	}
}

func BenchmarkReasonsCollect(b *testing.B) {
	r := NewReasons("edge", func(out *[xlat.NumReasons]uint64) error { return nil })
	ch := make(chan prometheus.Metric, xlat.NumReasons)
	b.ReportAllocs()
	for range b.N {
		r.Collect(ch)
		for range xlat.NumReasons {
			<-ch
		}
	}
}
