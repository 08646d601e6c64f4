package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a long-running program (an agent, iperf3, a server) started
// inside a namespace for a test. Its output goes line by line to the test
// log, prefixed with the namespace's role, and is kept for WaitFor.
type Process struct {
	Cmd  *exec.Cmd
	role Role
	tb   TB

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced whenever a line arrives
	done  chan struct{} // closed when the process has exited
	err   error         // Wait's result, once done
}

// maxLines bounds what a Process keeps of its output.
const maxLines = 10000

// StartProcess starts cmd inside the namespace. The test's cleanup stops
// it (SIGTERM, then SIGKILL after 5 s) if it is still running, so a
// failing test never leaves a process behind. cmd's Stdout and Stderr
// must be unset: the Process takes them.
func (n *NS) StartProcess(tb TB, cmd *exec.Cmd) *Process {
	tb.Helper()
	if cmd.Stdout != nil || cmd.Stderr != nil {
		tb.Fatalf("%s: StartProcess takes the output of %s", n.Name, cmd.Path)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if cmd.WaitDelay == 0 {
		// A child that keeps the output open must not hold Wait forever
		// once the program itself has exited.
		cmd.WaitDelay = 2 * time.Second
	}
	p := &Process{Cmd: cmd, role: n.Role, tb: tb, more: make(chan struct{}), done: make(chan struct{})}
	if err := n.Start(cmd); err != nil {
		tb.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		p.copy(pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-copied // every line is logged before the test can see "done"
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil && !p.stoppedBySignal(err) {
			tb.Logf("%s: %s exited: %v", n.Role, cmd.Path, err)
		}
	})
	return p
}

func (p *Process) copy(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1<<20)
	for s.Scan() {
		line := s.Text()
		p.tb.Logf("%s| %s", p.role, line)
		p.mu.Lock()
		if len(p.lines) < maxLines {
			p.lines = append(p.lines, line)
		}
		close(p.more)
		p.more = make(chan struct{})
		p.mu.Unlock()
	}
	// A line longer than the buffer ends the scan: drain the rest so
	// the program never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// Output returns the lines printed so far.
func (p *Process) Output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// WaitFor waits until a line containing substr has been printed, and
// returns it. It fails when the process exits first or ctx ends.
func (p *Process) WaitFor(ctx context.Context, substr string) (string, error) {
	for seen := 0; ; {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], substr) {
				line := p.lines[seen]
				p.mu.Unlock()
				return line, nil
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			// The last lines may have come with the exit.
			if line, ok := p.find(substr); ok {
				return line, nil
			}
			return "", fmt.Errorf("%s exited (%v) before printing %q", p.Cmd.Path, p.exitErr(), substr)
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q from %s: %w", substr, p.Cmd.Path, ctx.Err())
		}
	}
}

func (p *Process) find(substr string) (string, bool) {
	for _, l := range p.Output() {
		if strings.Contains(l, substr) {
			return l, true
		}
	}
	return "", false
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.exitErr()
	default:
		return false, nil
	}
}

func (p *Process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop asks the process to end with SIGTERM, kills it if it has not
// after 5 s, and returns how it exited (nil for status 0).
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return errors.Join(errors.New("did not stop within 5 s of SIGTERM: killed"), p.exitErr())
	}
	return p.exitErr()
}

// stoppedBySignal tells an exit caused by Stop's SIGTERM, which is not
// worth a log line, from a real failure.
func (p *Process) stoppedBySignal(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}
