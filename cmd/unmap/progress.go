package main

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// progress tells, on standard error, which step a long command is at
// (`unmap lab`, `unmap bench xdp`), so a silent minute is not mistaken
// for a hang. On a terminal one line rewrites itself; otherwise (a log, a
// CI run, a pipe) each step is a plain line of its own.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	shown bool // a rewriting line is on screen
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w)}
}

// isTerminal reports whether w is a file open on a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Step shows what the command does now.
func (p *progress) Step(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf(format, args...)
	if !p.tty {
		fmt.Fprintf(p.w, "... %s\n", line)
		return
	}
	// \r and erase-line: the new step overwrites the old one.
	fmt.Fprintf(p.w, "\r\x1b[K... %s", line)
	p.shown = true
}

// Clear removes a rewriting line before other output takes the screen.
func (p *progress) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}
