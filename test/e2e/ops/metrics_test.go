package ops

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

// metricsAddr is where both agents serve /metrics in the test: the
// loopback of each agent's own namespace.
const metricsAddr = "127.0.0.1:9410"

// scrape is one /metrics answer: each sample line's value by the line's
// series (name{labels} as the text format writes it).
type scrape map[string]float64

// fetchMetrics GETs /metrics from metricsAddr inside ns (the client dials
// from the namespace: only its loopback has the agent's server).
func fetchMetrics(ctx context.Context, ns *lab.NS) (scrape, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ns.Dial(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	out := scrape{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("bad line %q", line)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// get is the sum of the samples of metric name whose labels include
// every one of labels (`k="v"`); ok is false if there is none.
func (s scrape) get(name string, labels ...string) (sum float64, ok bool) {
	for series, v := range s {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				match = false
			}
		}
		if match {
			sum, ok = sum+v, true
		}
	}
	return sum, ok
}

// withMetrics adds metrics_listen to a config file.
func withMetrics(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "metrics_listen: %q\n", metricsAddr); err != nil {
		t.Fatal(err)
	}
}

// TestMetrics: with metrics_listen set, each agent serves /metrics on its
// namespace's loopback, with the datapath's reason counters, the
// flow-open latency histograms and the relay's per-site flows; an
// outbound UDP echo through a new flow moves the edge's flow-open
// histogram, its datapath's miss count, the relay's flows opened for the
// site and its flows held for it; an inbound one (srv6 to the LAN host)
// moves the relay's flow-open histogram.
func TestMetrics(t *testing.T) {
	l := labtest.New(t, lab.Options{CGNMode: lab.CGNPreserve, CGNUDPTimeout: 30 * time.Second})
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	withMetrics(t, d.RelayConfig)
	withMetrics(t, d.EdgeConfig)
	d.StartRelay(t, l)
	d.StartEdge(t, l)
	d.DumpOnFailure(t)
	e2e.Section(t, d.EdgeS, "session", "the edge's session", func(s e2e.EdgeSession) bool { return s.Connected })
	host := e2e.WaitAddr(t, l.NS(lab.LAN), lab.SitePrefix)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fetch := func(role lab.Role) scrape {
		t.Helper()
		s, err := fetchMetrics(ctx, l.NS(role))
		if err != nil {
			t.Fatalf("%s /metrics: %v", role, err)
		}
		return s
	}
	relay0, edge0 := fetch(lab.Relay), fetch(lab.Edge)
	for _, c := range []struct {
		what   string
		s      scrape
		name   string
		labels []string
	}{
		{"relay: datapath misses", relay0, "unmap_datapath_packets_total", []string{`reason="miss"`, `agent="relay"`}},
		{"relay: datapath drops", relay0, "unmap_datapath_packets_total", []string{`reason="drop-miss-full"`, `action="drop"`}},
		{"edge: datapath misses", edge0, "unmap_datapath_packets_total", []string{`reason="miss"`, `agent="edge"`}},
		{"relay: flows of site home", relay0, "unmap_relay_site_flows", []string{`site="home"`}},
		{"relay: sessions", relay0, "unmap_relay_sessions", nil},
		{"relay: flow table", relay0, "unmap_datapath_table_ways", nil},
		{"edge: flow-open latency", edge0, "unmap_edge_flow_open_seconds_count", nil},
		{"relay: flow-open latency", relay0, "unmap_relay_flow_open_seconds_count", nil},
		{"edge: control round trips", edge0, "unmap_control_ping_rtt_seconds_count", nil},
	} {
		// The histograms by protocol have no series before a flow opens.
		if strings.HasSuffix(c.name, "_seconds_count") && strings.Contains(c.name, "flow_open") {
			continue
		}
		if _, ok := c.s.get(c.name, c.labels...); !ok {
			t.Errorf("%s: no %s%v", c.what, c.name, c.labels)
		}
	}
	if n, _ := relay0.get("unmap_relay_sessions"); n != 1 {
		t.Errorf("relay sessions = %v, want 1", n)
	}

	e2e.EchoServer(t, l.NS(lab.Srv6))
	if _, err := l.NS(lab.LAN).EchoUDP(ctx, netip.AddrPortFrom(lab.Srv6Addr, lab.EchoPort), "metrics-out"); err != nil {
		t.Fatalf("lan → srv6 UDP: %v", err)
	}
	e2e.EchoServer(t, l.NS(lab.LAN))
	if _, err := l.NS(lab.Srv6).EchoUDP(ctx, netip.AddrPortFrom(host, lab.EchoPort), "metrics-in"); err != nil {
		t.Fatalf("srv6 → lan UDP: %v", err)
	}

	// The relay counts the inbound flow's open when its held packets go,
	// a moment after the echo may have come back: poll, with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for {
		relay1, edge1 := fetch(lab.Relay), fetch(lab.Edge)
		var behind []string
		moved := func(what string, before, after scrape, name string, labels ...string) {
			b, _ := before.get(name, labels...)
			a, _ := after.get(name, labels...)
			if a <= b {
				behind = append(behind, fmt.Sprintf("%s: %s%v %v → %v", what, name, labels, b, a))
			}
		}
		moved("edge", edge0, edge1, "unmap_edge_flow_open_seconds_count", `protocol="udp"`)
		moved("edge", edge0, edge1, "unmap_datapath_packets_total", `reason="miss"`)
		moved("edge", edge0, edge1, "unmap_datapath_table_used")
		moved("relay", relay0, relay1, "unmap_relay_site_flows_opened_total", `site="home"`)
		moved("relay", relay0, relay1, "unmap_relay_site_flows", `site="home"`)
		moved("relay", relay0, relay1, "unmap_relay_flow_open_seconds_count", `protocol="udp"`)
		moved("relay", relay0, relay1, "unmap_datapath_packets_total", `reason="miss"`)
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, b := range behind {
				t.Errorf("did not move: %s", b)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}
