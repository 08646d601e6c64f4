package status

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestServeAndFetch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "edge.sock")
	s := NewServer("edge", "test")
	var flows atomic.Int64
	s.Section("flows", func() any { return map[string]int64{"open": flows.Load()} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, path) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var st *Status
	var err error
	for i := 0; i < 100; i++ {
		flows.Store(int64(i))
		if st, err = Fetch(context.Background(), path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]int64
	if err := json.Unmarshal(st.Sections["flows"], &f); err != nil {
		t.Fatal(err)
	}
	if st.Role != "edge" || f["open"] != flows.Load() {
		t.Errorf("status %+v flows %v, want open=%d", st, f, flows.Load())
	}

	// A second agent on the same socket is refused, not allowed to steal it.
	err = NewServer("edge", "test").Serve(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("second server: %v", err)
	}
}

func TestFetchNoAgent(t *testing.T) {
	_, err := Fetch(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "is the agent running?") {
		t.Errorf("err = %v", err)
	}
}
