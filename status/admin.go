// Package status is an agent's local operator interface: a Unix socket
// that serves the agent's status as JSON, read by `unmap status`. It is
// local on purpose: file permissions on the socket are its access control,
// and nothing about it crosses the network.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Status is what an agent reports: who it is and a set of named sections,
// each a JSON object that the part of the agent owning it fills in
// (session, flows, datapath counters, ...).
type Status struct {
	Role     string                     `json:"role"`
	Version  string                     `json:"version"`
	Started  time.Time                  `json:"started"`
	Sections map[string]json.RawMessage `json:"sections"`
}

// Server serves an agent's status on a Unix socket.
type Server struct {
	role, version string
	started       time.Time

	mu       sync.Mutex
	sections map[string]func() any
}

// NewServer starts a status for role (edge or relay).
func NewServer(role, version string) *Server {
	return &Server{role: role, version: version, started: time.Now(), sections: map[string]func() any{}}
}

// Section registers fn to fill section name; fn must be safe to call from
// another goroutine and return something encoding/json can encode.
func (s *Server) Section(name string, fn func() any) {
	s.mu.Lock()
	s.sections[name] = fn
	s.mu.Unlock()
}

// Snapshot collects every section now.
func (s *Server) Snapshot() (*Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &Status{Role: s.role, Version: s.version, Started: s.started, Sections: map[string]json.RawMessage{}}
	for name, fn := range s.sections {
		b, err := json.Marshal(fn())
		if err != nil {
			return nil, fmt.Errorf("status section %s: %w", name, err)
		}
		st.Sections[name] = b
	}
	return st, nil
}

// Serve listens on the socket at path until ctx ends, then removes it. A
// stale socket left by a crashed agent is replaced; a live one (another
// agent answering) is an error rather than stolen.
func (s *Server) Serve(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another agent is serving this socket", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		st, err := s.Snapshot()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	err = srv.Serve(ln)
	_ = os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// maxStatus bounds what Fetch reads from a socket.
const maxStatus = 16 << 20

// Fetch asks the agent at path for its status.
func Fetch(ctx context.Context, path string) (*Status, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			err = op.Err
		}
		return nil, fmt.Errorf("no agent answers on %s: %w (is the agent running?)", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatus))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, body)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%s: bad status: %w", path, err)
	}
	return &st, nil
}
