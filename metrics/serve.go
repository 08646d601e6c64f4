package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry is an agent's registry: its own collectors, plus the Go
// runtime's and the process's (memory, goroutines, open files), which an
// operator graphs beside the agent's.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.MustRegister(cs...)
	return r
}

// Handler serves g in the Prometheus text (or protobuf) format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// Listen binds addr (metrics_listen) now, so a bad address fails the
// agent's start rather than a goroutine later.
func Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// Serve serves g's /metrics on ln until ctx ends. Nothing but /metrics
// is served; there is no authentication: bind it to localhost or a
// management network (OPERATING.md).
func Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(g))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 20 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names are the metric names cs describe (for the test that OPERATING.md
// documents every one).
func Names(cs ...prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// CheckListen validates a metrics_listen value: empty (off), or a
// host:port with a port (an address, a name such as localhost, or an
// empty host for every address).
func CheckListen(field, addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q: %w", field, addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%s: %q: want host:port with a port 1-65535", field, addr)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%s: %q: bad host", field, addr)
	}
	return nil
}
