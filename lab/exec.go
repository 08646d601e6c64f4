package lab

import (
	"context"
	"fmt"
	"os/exec"
)

// Start starts cmd inside the namespace. The child is forked by the
// thread that called Start (Go's forkExec runs on the calling thread), and
// that thread is inside the namespace, so the child and everything it
// runs live there; Wait, I/O and signals work as usual from anywhere.
//
// Tools that read /sys/class/net see the root namespace's sysfs (only
// netlink and /proc/net follow the namespace); use netlink-based tools.
func (n *NS) Start(cmd *exec.Cmd) error {
	if err := n.Do(cmd.Start); err != nil {
		return fmt.Errorf("%s: start %s: %w", n.Name, cmd.Path, err)
	}
	return nil
}

// Run runs cmd inside the namespace and waits for it.
func (n *NS) Run(cmd *exec.Cmd) error {
	if err := n.Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output runs a program inside the namespace and returns its combined
// standard output and error.
func (n *NS) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	b, err := n.combinedOutput(cmd)
	if err != nil {
		return b, fmt.Errorf("%s: %s %v: %w", n.Name, name, args, err)
	}
	return b, nil
}

func (n *NS) combinedOutput(cmd *exec.Cmd) ([]byte, error) {
	var out buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := n.Run(cmd)
	return out.Bytes(), err
}
