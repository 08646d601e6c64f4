package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/status"
)

// TestPrintStatusTables: a section of counts prints as a table of names
// and values, sorted; any other section as indented JSON; --json as the
// raw status.
func TestPrintStatusTables(t *testing.T) {
	st := &status.Status{Role: "relay", Version: "test", Started: time.Now(), Sections: map[string]json.RawMessage{
		"slowpath": json.RawMessage(`{"opened":12,"inbound-held-full":3}`),
		"control":  json.RawMessage(`{}`),
		"carriers": json.RawMessage(`{"sessions":{"home":{"public":"198.51.100.2"}}}`),
	}}
	var b strings.Builder
	if err := printStatus(&b, st, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"  slowpath:\n    inbound-held-full  3\n    opened             12\n",
		"  control:\n    (none)\n",
		"  carriers: {\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	b.Reset()
	if err := printStatus(&b, st, true); err != nil {
		t.Fatal(err)
	}
	var back status.Status
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil || string(back.Sections["slowpath"]) == "" {
		t.Errorf("--json: %v %s", err, b.String())
	}
}

// TestDefaultSockets: without --socket, status asks the two default
// sockets and then every templated edge's (unmap-edge@SITE.service), in
// name order, and nothing else the folder holds.
func TestDefaultSockets(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"edge-b.sock", "edge-a.sock", "relay.sock", "other.sock", "edge-c.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := defaultSockets(filepath.Join(dir, "edge-*.sock"))
	want := []string{edgeSocket, relaySocket, filepath.Join(dir, "edge-a.sock"), filepath.Join(dir, "edge-b.sock")}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
