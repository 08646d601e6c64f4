package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/unmap-dev/unmap/lab"
)

// setupUnmap runs `unmap relay` and `unmap edge` in the lab as an operator
// would deploy them (certificates from `unmap cert`, one config file per
// agent), waits for the edge's session and for the lan host's address in
// the delegated prefix. It returns a stop function for both agents.
//
// It is not lab.Deploy: that deployment is the tests' (debug logs, a
// relay carrier range of 16 ports so an attacker can cover it), and a
// benchmark opening hundreds of flows needs the default range and quiet
// agents.
func setupUnmap(ctx context.Context, l *lab.Lab, bin, dir string) (func() error, error) {
	if bin == "" {
		return nil, errors.New("unmap path: no unmap binary given")
	}
	ca, rdir, edir := filepath.Join(dir, "ca"), filepath.Join(dir, "relay"), filepath.Join(dir, "edge")
	for _, args := range [][]string{
		{"cert", "ca", "--out", ca},
		{"cert", "relay", "--ca", ca, "--ip", lab.RelayAddr.String(), "--out", rdir},
		{"cert", "edge", "--ca", ca, "--site", "bench", "--out", edir},
	} {
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("unmap %v: %w\n%s", args, err, out)
		}
	}
	relayYAML := filepath.Join(dir, "relay.yaml")
	edgeYAML := filepath.Join(dir, "edge.yaml")
	relaySock, edgeSock := filepath.Join(dir, "relay.sock"), filepath.Join(dir, "edge.sock")
	pins := filepath.Join(dir, "bpffs")
	if err := lab.MountPins(pins); err != nil {
		return nil, err
	}
	err := errors.Join(
		os.WriteFile(relayYAML, fmt.Appendf(nil, `listen: "%s:443"
tls: {ca: %s/ca.pem, cert: %s/relay.pem, key: %s/relay-key.pem}
interface: inet
addresses: [%s]
pin_path: %s
sites:
  - {id: bench, prefix: "%s", ipv4: 203.0.113.10}
`, lab.RelayAddr, rdir, rdir, rdir, lab.RelayAddr, filepath.Join(pins, "unmap", "relay"), lab.SiteGrant), 0o600),
		os.WriteFile(edgeYAML, fmt.Appendf(nil, `site: bench
relay: "%s:443"
tls: {ca: %s/ca.pem, cert: %s/edge.pem, key: %s/edge-key.pem}
lan_interface: lan
wan_interface: cgn
keepalive: 2s
pin_path: %s
`, lab.RelayAddr, edir, edir, edir, filepath.Join(pins, "unmap", "edge-bench")), 0o600))
	if err != nil {
		return nil, errors.Join(err, lab.UnmountPins(pins))
	}

	var procs []*proc
	stop := func() error {
		var errs []error
		for i := len(procs) - 1; i >= 0; i-- {
			errs = append(errs, procs[i].stop())
		}
		return errors.Join(append(errs, lab.UnmountPins(pins))...)
	}
	// The agents log at warn: a debug line per flow would cost CPU the
	// measurement needs.
	relay, err := start(l.NS(lab.Relay), bin, "--log-level", "warn", "relay", "-c", relayYAML, "--status-socket", relaySock)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	procs = append(procs, relay)
	edge, err := start(l.NS(lab.Edge), bin, "--log-level", "warn", "edge", "-c", edgeYAML, "--status-socket", edgeSock)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	procs = append(procs, edge)

	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := waitConnected(wctx, edgeSock, relay, edge); err != nil {
		return nil, errors.Join(err, stop())
	}
	if _, err := l.NS(lab.LAN).WaitAddr(wctx, lab.SitePrefix); err != nil {
		return nil, errors.Join(err, stop())
	}
	return stop, nil
}

// waitConnected waits for the edge's session; when it never comes, the
// error carries the output of an agent that exited.
func waitConnected(ctx context.Context, sock string, agents ...*proc) error {
	_, err := lab.WaitSection(ctx, sock, "session", func(s lab.EdgeSession) bool { return s.Connected })
	if err == nil {
		return nil
	}
	for _, a := range agents {
		err = errors.Join(err, a.exited())
	}
	return fmt.Errorf("the edge's session never came up: %w", err)
}
