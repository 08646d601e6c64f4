package main

import (
	"encoding/json"
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
