package bench

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestProbeRoundTrip(t *testing.T) {
	for _, size := range []int{0, minProbe, 1280, 1500} {
		p := probe{Op: probeDown, Size: 1400, ID: 0xdeadbeef}
		b := appendProbe(nil, p, size)
		if want := max(size-ip6UDP, probeHeader); len(b) != want {
			t.Errorf("padded to %d: %d bytes, want %d", size, len(b), want)
		}
		got, err := parseProbe(b)
		if err != nil || got != p {
			t.Errorf("parse(append(%+v)) = %+v, %v", p, got, err)
		}
	}
}

// TestProbeRefusals: every truncation and every bad field is refused
// with its own reason.
func TestProbeRefusals(t *testing.T) {
	good := appendProbe(nil, probe{Op: probeUp, Size: 1500, ID: 7}, 0)
	for n := range len(good) {
		if _, err := parseProbe(good[:n]); !errors.Is(err, errProbeShort) {
			t.Errorf("%d of %d bytes: %v", n, len(good), err)
		}
	}
	mutate := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	for _, c := range []struct {
		b    []byte
		want error
	}{
		{mutate(0, 'X'), errProbeMagic},
		{mutate(4, 0), errProbeOp},
		{mutate(4, 3), errProbeOp},
		{appendProbe(nil, probe{Op: probeDown, Size: minProbe - 1}, 0), errProbeSize},
	} {
		if _, err := parseProbe(c.b); !errors.Is(err, c.want) {
			t.Errorf("% x: %v, want %v", c.b, err, c.want)
		}
	}
}

func FuzzParseProbe(f *testing.F) {
	f.Add(appendProbe(nil, probe{Op: probeUp, Size: 1500, ID: 1}, 0))
	f.Add(appendProbe(nil, probe{Op: probeDown, Size: 1280, ID: 2}, 200))
	f.Add([]byte("UMSP"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseProbe(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same header (the reserved byte
		// is ignored, and written as zero).
		hdr := bytes.Clone(b[:probeHeader])
		hdr[5] = 0
		if again := appendProbe(nil, p, 0); !bytes.Equal(again, hdr) {
			t.Fatalf("% x parsed as %+v, re-encoded % x", hdr, p, again)
		}
	})
}

// TestLargest: the search finds the boundary, whatever it is, and fails
// when even the smallest size does not pass.
func TestLargest(t *testing.T) {
	for _, limit := range []int{1280, 1281, 1420, 1499, 1500} {
		tries := 0
		got, err := largest(1280, 1500, func(size int) (bool, error) { tries++; return size <= limit, nil })
		if err != nil || got != limit {
			t.Errorf("limit %d: found %d, %v", limit, got, err)
		}
		if tries > 10 {
			t.Errorf("limit %d: %d probes", limit, tries)
		}
	}
	if _, err := largest(1280, 1500, func(int) (bool, error) { return false, nil }); err == nil {
		t.Error("nothing passes: no error")
	}
	boom := errors.New("boom")
	if _, err := largest(1280, 1500, func(int) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("probe error lost: %v", err)
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 100}, {0.99, 198}, {1, 200}, {0, 1}} {
		if got := quantile(d, c.q); got != c.want {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("empty: not 0")
	}
}

func TestRatios(t *testing.T) {
	r := &Report{Rows: []Row{
		{Path: Native, Offloads: AsIs, Metric: Goodput, Value: 10},
		{Path: Native, Offloads: Off, Metric: Goodput, Value: 4},
		{Path: Unmap, Offloads: AsIs, Metric: Goodput, Value: 5},
		{Path: Unmap, Offloads: Off, Metric: Goodput, Value: 4},
		{Path: Unmap, Offloads: AsIs, Metric: FirstPacketLoss, Value: 1, Of: 10},
		{Path: WireGuard, Offloads: AsIs, Metric: ConnectP99, Value: 3},
	}}
	r.ratios()
	for i, want := range []float64{1, 1, 0.5, 1, 0, 0} {
		if r.Rows[i].Ratio != want {
			t.Errorf("row %d (%+v): ratio %v, want %v", i, r.Rows[i], r.Rows[i].Ratio, want)
		}
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0.50x", "1 of 10"} {
		if !bytes.Contains(b.Bytes(), []byte(want)) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
