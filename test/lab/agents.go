package lab

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// Agents are `unmap relay` and `unmap edge` of a Deployment running in a
// lab, outside any test (for `unmap lab`); their logs go to relay.log and
// edge.log in the deployment's folder.
type Agents struct {
	cmds []*exec.Cmd
	logs []*os.File
	done []chan error
}

// StartAgents starts the relay, then the edge, and waits for the edge's
// session with the relay.
func (l *Lab) StartAgents(ctx context.Context, d *Deployment) (*Agents, error) {
	a := &Agents{}
	for _, p := range []struct {
		role Role
		cmd  *exec.Cmd
		log  string
	}{{Relay, d.RelayCmd(), "relay.log"}, {Edge, d.EdgeCmd(), "edge.log"}} {
		f, err := os.Create(filepath.Join(d.Dir, p.log))
		if err != nil {
			return nil, errors.Join(err, a.Stop())
		}
		a.logs = append(a.logs, f)
		p.cmd.Stdout, p.cmd.Stderr = f, f
		if err := l.NS(p.role).Start(p.cmd); err != nil {
			return nil, errors.Join(err, a.Stop())
		}
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		a.cmds, a.done = append(a.cmds, p.cmd), append(a.done, done)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := WaitSection(wctx, d.EdgeSocket, "session", func(s EdgeSession) bool { return s.Connected }); err != nil {
		return nil, errors.Join(fmt.Errorf("the edge did not connect (logs in %s): %w", d.Dir, err), a.Stop())
	}
	return a, nil
}

// Stop ends the agents (SIGTERM, then SIGKILL after 5 s), edge first.
func (a *Agents) Stop() error {
	var errs []error
	for i := len(a.cmds) - 1; i >= 0; i-- {
		_ = a.cmds[i].Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done[i]:
		case <-time.After(5 * time.Second):
			_ = a.cmds[i].Process.Kill()
			<-a.done[i]
			errs = append(errs, fmt.Errorf("%s did not stop on SIGTERM: killed", a.cmds[i].Args[3]))
		}
	}
	for _, f := range a.logs {
		errs = append(errs, f.Close())
	}
	a.cmds, a.logs, a.done = nil, nil, nil
	return errors.Join(errs...)
}

// WaitAddr waits until the namespace has a global address in p (one
// that SLAAC made, for the LAN host), past duplicate address detection,
// and returns it.
func (n *NS) WaitAddr(ctx context.Context, p netip.Prefix) (netip.Addr, error) {
	for {
		addrs, err := n.nl.AddrList(nil, netlink.FAMILY_ALL)
		if err != nil {
			return netip.Addr{}, err
		}
		for _, a := range addrs {
			// A tentative address (DAD not done) is not used as a
			// source yet: the host would send from its link-local one.
			if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
				continue
			}
			if ip, ok := netip.AddrFromSlice(a.IP); ok && p.Contains(ip.Unmap()) {
				return ip.Unmap(), nil
			}
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("%s: no address in %v: %w", n.Name, p, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
