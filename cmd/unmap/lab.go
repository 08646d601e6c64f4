package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/lab"
)

// labOptions are the flags of `unmap lab`.
type labOptions struct {
	keep       bool
	cgnMode    string
	udpTimeout time.Duration
	binary     string // the unmap binary whose agents run in the lab
}

func newLabCmd() *cobra.Command {
	var o labOptions
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build the network-namespace lab, tour what works across it, tear it down",
		Long: `lab builds the unmap test network in network namespaces on this machine (a
site host, its router, an upstream CGNAT, an Internet router, the relay, IPv4
and IPv6-only servers, a subscriber), runs a short tour of checks and prints
one row per check: what was expected, what happened, and the verdict. It exits
non-zero if any row differs from what is expected. Needs root.

Nothing is added to the root namespace. The lab is torn down on exit, on
Ctrl-C and on SIGTERM, unless --keep is given; 'unmap lab down' removes labs
that were kept or whose process died.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLab(cmd.Context(), cmd.OutOrStdout(), newProgress(cmd.ErrOrStderr()), o)
		},
	}
	cmd.Flags().BoolVar(&o.keep, "keep", false, "leave the lab up after the tour and print how to enter each namespace")
	cmd.Flags().StringVar(&o.cgnMode, "cgn-mode", "preserve", "upstream CGNAT port mapping: preserve (plain masquerade) or random (random,fully-random)")
	cmd.Flags().StringVar(&o.binary, "unmap-binary", "", "unmap binary to run the agents with (default: this one)")
	cmd.Flags().DurationVar(&o.udpTimeout, "cgn-udp-timeout", 0, "upstream CGNAT conntrack UDP timeout, whole seconds (0: kernel default, 30s/120s)")
	cmd.AddCommand(newLabDownCmd())
	return cmd
}

func runLab(ctx context.Context, w io.Writer, p *progress, o labOptions) (err error) {
	mode, err := lab.ParseCGNMode(o.cgnMode)
	if err != nil {
		return fmt.Errorf("--cgn-mode: %w", err)
	}
	opts := lab.Options{CGNMode: mode, CGNUDPTimeout: o.udpTimeout}
	if err := opts.Validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("lab needs root: it creates network namespaces and nftables rules")
	}
	defer p.Clear() // an error message starts on a line of its own
	p.Step("building the lab: %d network namespaces", len(lab.Roles))
	l, err := lab.New(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		p.Clear()
		if o.keep && ctx.Err() == nil {
			err = errors.Join(err, l.Release())
			return
		}
		p.Step("tearing the lab down")
		cerr := l.Close()
		p.Clear()
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
		} else {
			fmt.Fprintf(w, "\nlab %s torn down\n", l.Prefix)
		}
	}()

	timeout := "kernel default"
	if o.udpTimeout > 0 {
		timeout = o.udpTimeout.String()
	}
	p.Clear()
	fmt.Fprintf(w, "lab %s: cgn %s, cgn UDP timeout %s\n\n", l.Prefix, mode, timeout)
	p.Step("starting the tour's echo servers")
	env, err := lab.NewEnv(l)
	if err != nil {
		return err
	}
	tour := "without unmap"
	env.Step = func(i, n int, name string) { p.Step("%s, check %d of %d: %s", tour, i, n, name) }
	res := lab.RunTour(ctx, env, lab.BaselineChecks())
	p.Clear()
	fmt.Fprintln(w, "without unmap:")
	if err := lab.WriteTable(w, res); err != nil {
		return err
	}
	if ctx.Err() == nil {
		tour = "with unmap"
		with, err := tourWithUnmap(ctx, w, p, l, env, o.binary)
		if err != nil {
			return err
		}
		res = append(res, with...)
	}
	if o.keep && ctx.Err() == nil {
		printEnter(w, l)
	}
	bad := 0
	for _, r := range res {
		if !r.OK() {
			bad++
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d checks differ from what is expected", bad, len(res))
	}
	return nil
}

// tourWithUnmap deploys unmap in the lab (certificates from this very
// binary's `unmap cert`, a config per agent), runs `unmap relay` and
// `unmap edge` in their namespaces, and tours the lab again.
func tourWithUnmap(ctx context.Context, w io.Writer, p *progress, l *lab.Lab, env *lab.Env, bin string) ([]lab.Result, error) {
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if strings.HasSuffix(bin, ".test") {
		// A test binary runs its tests, not `unmap cert`: it would start
		// the test suite again, and that run another lab.
		return nil, errors.New("lab: running under go test: pass --unmap-binary")
	}
	dir, err := os.MkdirTemp("", "unmap-lab-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p.Step("deploying unmap: certificates, relay.yaml, edge.yaml")
	d, err := lab.Deploy(bin, dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	p.Step("starting unmap relay and unmap edge")
	agents, err := l.StartAgents(ctx, d)
	if err != nil {
		return nil, err
	}
	defer agents.Stop()
	env.Agents = agents
	defer func() { env.Agents = nil }()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p.Step("waiting for the lan host's address from the edge")
	host, err := l.NS(lab.LAN).WaitAddr(wctx, lab.SitePrefix)
	if err != nil {
		return nil, fmt.Errorf("the LAN host got no address from the edge's router advertisements: %w", err)
	}
	res := lab.RunTour(ctx, env, append([]lab.Check{{
		Name: "lan: an address in " + lab.SitePrefix.String() + " by SLAAC from the edge: " + host.String(), Expect: lab.Works,
		Run: func(context.Context, *lab.Env) error { return nil },
	}}, lab.UnmapChecks(host)...))
	p.Clear()
	fmt.Fprintf(w, "\nwith unmap (relay and edge running, site %s granted %v):\n", "home", lab.SiteGrant)
	return res, lab.WriteTable(w, res)
}

// printEnter tells how to enter each namespace, and what is inside.
func printEnter(w io.Writer, l *lab.Lab) {
	fmt.Fprintf(w, "\nlab %s is up. Enter a namespace with:\n", l.Prefix)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, n := range l.Namespaces() {
		var ifs []string
		for _, in := range lab.Interfaces(n.Role) {
			addrs := make([]string, len(in.Addrs))
			for i, a := range in.Addrs {
				addrs[i] = a.String()
			}
			ifs = append(ifs, in.Name+" "+strings.Join(addrs, " "))
		}
		fmt.Fprintf(tw, "  %s\tnsenter --net=%s\t%s\n", n.Role, n.Path(), strings.Join(ifs, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w, "Remove it with: unmap lab down")
}

// labPrefixArg is a lab's prefix as `unmap lab down` takes it.
var labPrefixArg = regexp.MustCompile(`^` + lab.NamePrefix + `[0-9a-f]{6}$`)

func newLabDownCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "down [PREFIX...]",
		Short: "Remove leftover lab namespaces (unmap-<6 hex>-<role>)",
		Long: `down removes the namespaces of labs that were kept (--keep) or whose process
died, and says what it removed. Labs still owned by a running process (a test
in progress) are left alone unless --all is given. Given prefixes (unmap-<6 hex>,
as 'unmap lab --keep' prints), it removes only those labs.`,
		Args: func(_ *cobra.Command, args []string) error {
			for _, a := range args {
				if !labPrefixArg.MatchString(a) {
					return fmt.Errorf("%q is not a lab prefix (unmap-<6 hex>)", a)
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			removed, kept, err := lab.Down(all, args...)
			for _, name := range removed {
				fmt.Fprintln(w, "removed", name)
			}
			for _, lo := range kept {
				fmt.Fprintf(w, "kept %s (%s): in use by running process %d; --all removes it\n",
					lo.Prefix, strings.Join(lo.Namespaces, " "), lo.Owner)
			}
			if len(removed) == 0 && len(kept) == 0 && err == nil {
				fmt.Fprintln(w, "no lab namespaces found")
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove labs of running processes")
	return cmd
}
