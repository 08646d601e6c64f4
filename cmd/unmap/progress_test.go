package main

import (
	"bytes"
	"testing"
)

// TestProgress: off a terminal each step is a plain line and Clear writes
// nothing; on a terminal each step overwrites the line and Clear erases it.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b)
	if p.tty {
		t.Fatal("a buffer taken for a terminal")
	}
	p.Step("step %d", 1)
	p.Step("step %d", 2)
	p.Clear()
	if got, want := b.String(), "... step 1\n... step 2\n"; got != want {
		t.Errorf("plain: %q, want %q", got, want)
	}
	b.Reset()
	p.tty = true
	p.Step("step %d", 1)
	p.Step("step %d", 2)
	p.Clear()
	p.Clear()
	if got, want := b.String(), "\r\x1b[K... step 1\r\x1b[K... step 2\r\x1b[K"; got != want {
		t.Errorf("terminal: %q, want %q", got, want)
	}
}
