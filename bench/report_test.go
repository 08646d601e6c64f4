package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/bench/xdpbench"
	"github.com/unmap-dev/unmap/session/xlat"
)

// fixtureReport writes the report of the fixture results
// (testdata/report: made-up figures with round ratios) into a temporary
// folder and returns the folder and its page.
func fixtureReport(t *testing.T) (dir, page string) {
	t.Helper()
	lab, err := ReadLabResults("testdata/report/lab.json")
	if err != nil {
		t.Fatal(err)
	}
	x, err := ReadXDPResults("testdata/report/xdp.json")
	if err != nil {
		t.Fatal(err)
	}
	cg, err := ReadCGNATResults("testdata/report/cgnat.json")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if err := WriteReport(dir, lab, x, cg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportPage))
	if err != nil {
		t.Fatal(err)
	}
	return dir, string(b)
}

// TestReportTables: the page's tables carry each figure with its ratio to
// the baseline of the same run, computed from the values (the fixture
// holds no ratios): the lab's against native in the same offload mode,
// the datapath's against the empty program.
func TestReportTables(t *testing.T) {
	_, page := fixtureReport(t)
	for _, want := range []string{
		// as is: native 10, unmap 5, wireguard 2.5; each with its streams' range
		"| tcp goodput up (Gbit/s) | 10.00 (9.00–11.00) | 5.00 (4.50–5.50) | 0.50x | 2.50 (2.25–2.75) | 0.25x |",
		// offloads off halves the fixture's goodput: the ratios stay
		"| tcp goodput down (Gbit/s) | 4.00 (3.60–4.40) | 3.00 (2.70–3.30) | 0.75x | 1.00 (0.90–1.10) | 0.25x |",
		"| tcp connect median (ms) | 0.200 | 0.500 | 2.50x | 0.300 | 1.50x |",
		"| udp rtt median (ms) | 0.100 | 0.120 | 1.20x | 0.250 | 2.50x |",
		"| largest IPv6 packet up (bytes) | 1500 | 1500 | 1.00x | 1420 | 0.95x |",
		// a count has no ratio
		"| first-packet loss (flows) | 0 of 100 | 0 of 100 | - | 3 of 100 | - |",
		"| tcp v6<->v4 established | 35 | 33–40 | +25 ns | 3.50x | XDP_PASS | 2540 | mean of both directions |",
		"| miss to agent ring | 120 | 110–130 | +110 ns | 12.00x | XDP_DROP | 2540 |  |",
		"- tcp goodput up (Gbit/s): native 10.00; unmap 5.00 (0.50x); wireguard 2.50 (0.25x)",
		"Fixture CPU @ 2.0GHz (2 CPUs), Linux 6.1.0-fixture #1 SMP; unmap commit `0123456789ab`",
		// the CGNAT: unmap over nftables, the rounds' range (of each path, and of the ratio round by
		// round: 4/1, 3/0.9, 5/1.1), the target met or missed by how much
		"| new mappings/s |  | 0.400M (0.300–0.500) | 0.100M (0.090–0.110) | 4.00x (3.33–4.55) | 0.800M (0.600–1.000) | 0.150M (0.135–0.165) | 5.33x | >= 2x: met |",
		"| udp packets/s, small set | 10000 | 0.900M (0.800–1.000) | 0.300M (0.250–0.350) | 3.00x (2.86–3.20) | 1.800M (1.600–2.000) | 0.450M (0.375–0.525) | 4.00x | >= 3x: met |",
		"| udp packets/s, large set | 1000000 (kernel 245760) | 0.600M (0.500–0.700) | 0.400M (0.350–0.450) | 1.50x (1.43–1.56) | 1.200M (1.000–1.400) | 0.600M (0.525–0.675) | 2.00x | >= 3x: **missed** (50% of it) |",
		"| map memory per mapping (bytes) | 1000000 (kernel 245760) | 110.0 | 440.0 | 0.25x | - | - | - | <= 128 bytes: met |",
		"| tcp goodput sub to srv4 (Gbit/s) |  | 2.00 (1.50–2.50) | 4.00 (3.50–4.50) | 0.50x (0.43–0.56) | - | - | - |  |",
		"| floor: no NAT (generator, an XDP redirect in the relay, counter) |  | 1.200M (1.100–1.300) |  |  | 2.400M (2.200–2.600) |  |  |  |",
		"| unmap | 10000 | 1000 | 500 | 80 | 300 | 60 | 60 |",
		"| nftables | 10000 | 3000 | 1500 | 80 | - | 60 | 1360 |",
		"--cgnat docs/bench/cgnat.json",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Every metric once in each mode's table.
	for _, m := range Metrics {
		if n := strings.Count(page, "\n| "+string(m)+" |"); n != 2 {
			t.Errorf("%s: %d rows, want 2", m, n)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}
}

// TestReportPlots: each plot the page shows is in the folder and is an
// SVG document that parses as XML; the goodput plot carries the ratio
// labels and the XDP plot names every path.
func TestReportPlots(t *testing.T) {
	dir, page := fixtureReport(t)
	links := regexp.MustCompile(`!\[[^\]]*\]\(([^)]+)\)`).FindAllStringSubmatch(page, -1)
	if len(links) != 6 {
		t.Fatalf("%d plots on the page, want 6", len(links))
	}
	texts := map[string]string{}
	for _, l := range links {
		name := l[1]
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("the page shows %s: %v", name, err)
		}
		root, text, err := parseSVG(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if root != "svg" {
			t.Errorf("%s: root element %q", name, root)
		}
		// The check can fail: half a file is not a document.
		if _, _, err := parseSVG(b[:len(b)/2]); err == nil {
			t.Errorf("%s: half of it parses", name)
		}
		texts[name] = text
	}
	for name, want := range map[string][]string{
		goodputSVG: {"0.50x", "0.25x", "0.75x", "native", "unmap", "wireguard", "offloads as is", "offloads off"},
		mtuSVG:     {"1500", "1420", "ICMPv6 echo"},
		xdpSVG:     {"baseline: empty XDP_PASS: 10 ns, 1.00x", "tcp v6&lt;-&gt;v4 established: 35 ns, 3.50x", "miss to agent ring: 120 ns, 12.00x"},
		connectSVG: {"offloads as is"},
		rttSVG:     {"offloads off"},
		cgnatSVG:   {"4.00x", "3.00x", "2.00x", "1.50x", "unmap", "nftables", "new mappings/s", "1000000 mappings", "(nftables 245760)"},
	} {
		for _, w := range want {
			w = strings.NewReplacer("&lt;", "<", "&gt;", ">").Replace(w)
			if !strings.Contains(texts[name], w) {
				t.Errorf("%s: no text %q", name, w)
			}
		}
	}
	for _, f := range []string{LabJSON, XDPJSON, CGNATJSON} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("raw results: %v", err)
		}
	}
}

// parseSVG decodes an XML document to its end and returns its root
// element's name and all its character data.
func parseSVG(b []byte) (root, text string, err error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	var sb strings.Builder
	depth := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", "", err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			sb.Write(tok)
			sb.WriteByte('\n')
		}
	}
	if root == "" || depth != 0 {
		return "", "", errors.New("no root element, or an element left open")
	}
	return root, sb.String(), nil
}

// TestResultsRoundTrip: what the bench commands' --json write reads back
// to the same results, samples, machine and all.
func TestResultsRoundTrip(t *testing.T) {
	m := Machine{CPU: "cpu", Cores: 2, Kernel: "6.1", Commit: "abc", Go: "go1.26", Date: time.Date(2026, 12, 3, 4, 5, 6, 0, time.UTC)}
	rep := &Report{Config: Config{Goodput: 3 * time.Second, Rounds: 3, Connects: 200, Pings: 200, Flows: 100, Paths: []string{Native, Unmap}, Unmap: "/not/saved"}, Rows: []Row{
		{Path: Native, Offloads: AsIs, Metric: Goodput, Value: 10, Samples: []float64{9, 10, 11}},
		{Path: Unmap, Offloads: AsIs, Metric: Goodput, Value: 5, Samples: []float64{5, 4, 6}},
		{Path: Unmap, Offloads: Off, Metric: FirstPacketLoss, Value: 0, Of: 100},
	}}
	rep.ratios()
	dir := t.TempDir()
	lab := LabResultsOf(m, rep)
	if err := WriteJSON(filepath.Join(dir, "lab.json"), lab); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLabResults(filepath.Join(dir, "lab.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := *lab
	want.Config.Unmap = "" // a path on the measuring machine, not a result
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("lab results read back\n%+v\nwrote\n%+v", *got, want)
	}
	if r, _ := got.Report().Find(Unmap, AsIs, Goodput); r.Ratio != 0.5 {
		t.Errorf("ratio read back %v, want 0.5", r.Ratio)
	}

	res := []xdpbench.Result{
		{Path: "baseline", Repeats: 2540, PerPkt: 10 * time.Nanosecond, Rounds: []time.Duration{12, 10, 9}, Verdict: xlat.Pass},
		{Path: "miss", Repeats: 2540, PerPkt: 120 * time.Nanosecond, Rounds: []time.Duration{130, 120, 110}, Verdict: xlat.Drop, Note: "n", Reasons: map[xlat.Reason]uint64{xlat.ReasonMiss: 2540}},
	}
	x := XDPResultsOf(m, 2540, res)
	if p := x.Paths[1]; p.Ns != 120 || !reflect.DeepEqual(p.RoundNs, []float64{130, 120, 110}) || p.Verdict != "XDP_DROP" || p.Reasons[xlat.ReasonMiss.String()] != 2540 {
		t.Errorf("saved form of the miss path: %+v", p)
	}
	if err := WriteJSON(filepath.Join(dir, "xdp.json"), x); err != nil {
		t.Fatal(err)
	}
	gotx, err := ReadXDPResults(filepath.Join(dir, "xdp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotx, x) {
		t.Errorf("xdp results read back\n%+v\nwrote\n%+v", gotx, x)
	}
}

// TestCGNATResultsRoundTrip: what `unmap bench cgnat --json` writes
// reads back the same; a file with no rows, or a negative figure, is
// refused with its name.
func TestCGNATResultsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want, err := ReadCGNATResults("testdata/report/cgnat.json")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, CGNATJSON)
	if err := WriteJSON(p, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCGNATResults(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwrote\n%+v", got, want)
	}
	if r, _ := got.Find(CGNATPPSSmall); r.Ratio() != 3 {
		t.Errorf("ratio %v, want 3", r.Ratio())
	}
	for name, body := range map[string]string{
		"norows.json":   `{"machine":{},"rows":[]}`,
		"negative.json": `{"machine":{},"rows":[{"metric":"m","unmap":-1,"kernel":1}]}`,
		"unknown.json":  `{"machine":{},"rows":[{"metric":"m","unmap":1,"kernel":1}],"extra":1}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadCGNATResults(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestReadResultsRefuses: a file that is not a results file, or whose
// baseline cannot give a ratio, is refused with its name.
func TestReadResultsRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown.json":  `{"machine":{},"rows":[{"path":"native","metric":"m","value":1}],"extra":1}`,
		"norows.json":   `{"machine":{},"rows":[]}`,
		"nometric.json": `{"machine":{},"rows":[{"path":"native","value":1}]}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadLabResults(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := filepath.Join(dir, "zero.json")
	os.WriteFile(p, []byte(`{"machine":{},"paths":[{"path":"baseline","ns_per_pkt":0}]}`), 0o644)
	if _, err := ReadXDPResults(p); err == nil {
		t.Error("a baseline of 0 ns accepted")
	}
}

func TestParseSourceRequest(t *testing.T) {
	req := func(ms uint64) []byte { return binary.BigEndian.AppendUint64(nil, ms) }
	if d, err := parseSourceRequest(req(3000)); err != nil || d != 3*time.Second {
		t.Errorf("3000 ms: %v, %v", d, err)
	}
	for _, b := range [][]byte{nil, req(1)[:7], req(0), req(uint64(maxSourceStream/time.Millisecond) + 1), append(req(5), 0)} {
		if d, err := parseSourceRequest(b); err == nil {
			t.Errorf("%x: accepted, %v", b, d)
		}
	}
}

// FuzzParseSourceRequest: the source's request parser never accepts a
// stream longer than its bound, whatever the bytes.
func FuzzParseSourceRequest(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint64(nil, 3000))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseSourceRequest(b)
		if err == nil && (d <= 0 || d > maxSourceStream || len(b) != sourceRequestLen) {
			t.Fatalf("%x: accepted %v", b, d)
		}
	})
}

// TestCommittedReport: the report committed in docs/bench is what its own
// results make with this code, so it can be made again from them (and a
// change to the page that is not regenerated shows here).
func TestCommittedReport(t *testing.T) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(root)
		if up == root {
			t.Fatal("no go.mod above the test's directory")
		}
		root = up
	}
	docs := filepath.Join(root, "docs", "bench")
	lab, err := ReadLabResults(filepath.Join(docs, LabJSON))
	if err != nil {
		t.Fatal(err)
	}
	x, err := ReadXDPResults(filepath.Join(docs, XDPJSON))
	if err != nil {
		t.Fatal(err)
	}
	cg, err := ReadCGNATResults(filepath.Join(docs, CGNATJSON))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join(docs, ReportPage))
	if err != nil {
		t.Fatal(err)
	}
	if got := Markdown(lab, x, cg); got != string(committed) {
		t.Errorf("docs/bench/README.md is not what its results make; run\n  go run ./cmd/unmap bench report --out docs/bench --lab docs/bench/lab.json --xdp docs/bench/xdp.json --cgnat docs/bench/cgnat.json")
	}
	for _, name := range []string{goodputSVG, connectSVG, rttSVG, mtuSVG, xdpSVG, cgnatSVG} {
		b, err := os.ReadFile(filepath.Join(docs, name))
		if err != nil {
			t.Fatal(err)
		}
		if root, _, err := parseSVG(b); err != nil || root != "svg" {
			t.Errorf("docs/bench/%s: %q, %v", name, root, err)
		}
	}
}
