package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/lab"
)

// MetricsAddr is where an agent serves /metrics in the tests that add
// metrics_listen (WithMetrics): the loopback of its own namespace.
const MetricsAddr = "127.0.0.1:9410"

// WithMetrics adds metrics_listen (MetricsAddr) to a config file.
func WithMetrics(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "metrics_listen: %q\n", MetricsAddr); err != nil {
		t.Fatal(err)
	}
}

// Scrape is one /metrics answer: each sample line's value by the line's
// series (name{labels} as the text format writes it).
type Scrape map[string]float64

// FetchMetrics GETs /metrics from MetricsAddr inside ns (the client
// dials from the namespace: only its loopback has the agent's server).
func FetchMetrics(ctx context.Context, ns *lab.NS) (Scrape, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ns.Dial(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+MetricsAddr+"/metrics", nil)
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
	out := Scrape{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad line %q", line)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// Get is the sum of the samples of metric name whose labels include
// every one of labels (`k="v"`); ok is false if there is none.
func (s Scrape) Get(name string, labels ...string) (sum float64, ok bool) {
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
