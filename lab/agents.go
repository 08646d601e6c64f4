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
	l    *Lab
	d    *Deployment
	cmds []*exec.Cmd // relay, edge
	logs []*os.File
	done []chan error
}

// StartAgents starts the relay, then the edge, and waits for the edge's
// session with the relay.
func (l *Lab) StartAgents(ctx context.Context, d *Deployment) (*Agents, error) {
	a := &Agents{l: l, d: d}
	for i, log := range []string{"relay.log", "edge.log"} {
		f, err := os.Create(filepath.Join(d.Dir, log))
		if err != nil {
			return nil, errors.Join(err, a.Stop())
		}
		a.logs = append(a.logs, f)
		a.cmds, a.done = append(a.cmds, nil), append(a.done, nil)
		if err := a.start(i); err != nil {
			return nil, errors.Join(err, a.Stop())
		}
	}
	if err := a.waitSession(ctx, 0); err != nil {
		return nil, errors.Join(err, a.Stop())
	}
	return a, nil
}

// start starts agent i (0 the relay, 1 the edge), its output to its log.
func (a *Agents) start(i int) error {
	cmd, role := a.d.RelayCmd(), Relay
	if i == 1 {
		cmd, role = a.d.EdgeCmd(), Edge
	}
	cmd.Stdout, cmd.Stderr = a.logs[i], a.logs[i]
	if err := a.l.NS(role).Start(cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	a.cmds[i], a.done[i] = cmd, done
	return nil
}

// stop ends agent i: SIGTERM, then SIGKILL after 5 s.
func (a *Agents) stop(i int) error {
	if a.cmds[i] == nil {
		return nil
	}
	defer func() { a.cmds[i] = nil }()
	_ = a.cmds[i].Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done[i]:
		return nil
	case <-time.After(5 * time.Second):
		_ = a.cmds[i].Process.Kill()
		<-a.done[i]
		return fmt.Errorf("%s did not stop on SIGTERM: killed", a.cmds[i].Args[3])
	}
}

// waitSession waits for the edge's session, another than old (0: any).
func (a *Agents) waitSession(ctx context.Context, old uint64) error {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := WaitSection(wctx, a.d.EdgeSocket, "session", func(s EdgeSession) bool { return s.Connected && s.Session != old }); err != nil {
		return fmt.Errorf("the edge did not connect (logs in %s): %w", a.d.Dir, err)
	}
	return nil
}

// Restart stops the agent of role (Relay or Edge) and starts it again,
// and waits for the edge's session: the established flows are expected
// to keep going throughout.
func (a *Agents) Restart(ctx context.Context, role Role) error {
	i := 0
	if role == Edge {
		i = 1
	}
	old, err := WaitSection(ctx, a.d.EdgeSocket, "session", func(EdgeSession) bool { return true })
	if err != nil {
		return err
	}
	if err := a.stop(i); err != nil {
		return err
	}
	if err := a.start(i); err != nil {
		return err
	}
	return a.waitSession(ctx, old.Session)
}

// Stop ends the agents (SIGTERM, then SIGKILL after 5 s), edge first.
func (a *Agents) Stop() error {
	var errs []error
	for i := len(a.cmds) - 1; i >= 0; i-- {
		errs = append(errs, a.stop(i))
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
