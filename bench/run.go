package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/unmap-dev/unmap/lab"
)

// The paths the harness measures, each in a lab of its own. The labs are
// up together but measured one at a time (two paths at once would share
// the two cores).
const (
	Native    = "native"    // IPv6 routed on every link, no CGN: the lab's limit
	Unmap     = "unmap"     // unmap edge and relay through the CGN
	WireGuard = "wireguard" // wireguard-go through the same CGN
)

// Paths lists every path in the order they run.
var Paths = []string{Native, Unmap, WireGuard}

// Config says what to measure and how long. The zero value of each field
// means its default: the full benchmark (about two minutes here).
type Config struct {
	// Unmap is the unmap binary the agents run from (required for the
	// unmap path): `unmap bench lab` passes itself, tests build one.
	Unmap string `json:"-"`
	// WireGuard is a wireguard-go binary; empty builds WireGuardModule.
	WireGuard string `json:"-"`
	// Paths to measure; empty means all of Paths.
	Paths []string `json:"paths,omitempty"`
	// Goodput is how long each TCP stream runs (default 3 s), and
	// Rounds how many streams each path runs in turn with the others
	// in each direction (default 3); the median is reported.
	Goodput time.Duration `json:"goodput_ns,omitempty"`
	Rounds  int           `json:"rounds,omitempty"`
	// Connects is how many TCP connects are timed (default 200).
	Connects int `json:"connects,omitempty"`
	// Pings is how many UDP round trips are timed on one flow
	// (default 200).
	Pings int `json:"pings,omitempty"`
	// Flows is how many new UDP flows test first-packet loss (default 100).
	Flows int `json:"flows,omitempty"`
	// Log receives a line per step, for progress; nil discards them.
	Log func(format string, args ...any) `json:"-"`
}

// Short is a configuration that measures everything in a few seconds
// per path, for tests.
func Short() Config {
	return Config{Goodput: time.Second, Rounds: 1, Connects: 20, Pings: 20, Flows: 20}
}

func (c Config) withDefaults() Config {
	if len(c.Paths) == 0 {
		c.Paths = Paths
	}
	if c.Goodput <= 0 {
		c.Goodput = 3 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Connects <= 0 {
		c.Connects = 200
	}
	if c.Pings <= 0 {
		c.Pings = 200
	}
	if c.Flows <= 0 {
		c.Flows = 100
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	return c
}

// Validate reports the first field that cannot be used.
func (c Config) Validate() error {
	for _, p := range c.Paths {
		if !slices.Contains(Paths, p) {
			return fmt.Errorf("bench: no path %q (paths: %s)", p, strings.Join(Paths, ", "))
		}
	}
	if c.Goodput < 0 || c.Rounds < 0 || c.Connects < 0 || c.Pings < 0 || c.Flows < 0 {
		return errors.New("bench: Goodput, Rounds, Connects, Pings and Flows must not be negative")
	}
	return nil
}

// Run measures every path of cfg, with offloads as they are and then off,
// and returns one row per figure with its ratio to the native path in the
// same offload mode. Each path has a lab of its own, all built first and
// up together; the measurements then take turns across the paths (and
// goodput takes Rounds turns, reporting the median), so that load from
// elsewhere on the machine falls on every path alike. Run stops at the
// first figure it cannot measure; the rows measured so far are returned
// with the error.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("bench lab needs root: it builds network namespaces")
	}
	dir, err := os.MkdirTemp("", "unmap-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rep = &Report{Config: cfg}
	defer rep.ratios()

	var paths []*pathLab
	defer func() {
		for i := len(paths) - 1; i >= 0; i-- {
			err = errors.Join(err, paths[i].close())
		}
	}()
	for _, name := range cfg.Paths {
		p, err := setupPath(ctx, cfg, name, filepath.Join(dir, name))
		if err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
		paths = append(paths, p)
	}
	for _, mode := range []Offloads{AsIs, Off} {
		if mode == Off {
			for _, p := range paths {
				if err := offloadsOff(p.lab); err != nil {
					return rep, fmt.Errorf("%s: %w", p.name, err)
				}
			}
		}
		if err := measure(ctx, cfg, paths, mode, rep); err != nil {
			return rep, fmt.Errorf("offloads %s: %w", mode, err)
		}
	}
	for _, p := range paths {
		if r := p.srv.refused.snapshot(); len(r) > 0 {
			cfg.Log("%s: srv6 refused malformed size probes or stream requests: %v", p.name, r)
		}
	}
	return rep, nil
}

// pathLab is one path, set up in a lab of its own.
type pathLab struct {
	name string
	lab  *lab.Lab
	srv  *servers
	stop func() error // the path's programs; nil when it has none
}

func (p *pathLab) close() error {
	var errs []error
	if p.srv != nil {
		errs = append(errs, p.srv.close())
	}
	if p.stop != nil {
		errs = append(errs, p.stop())
	}
	errs = append(errs, p.lab.Close())
	return errors.Join(errs...)
}

// setupPath builds a lab for one path, starts what the path needs and
// the servers on srv6. On failure it leaves nothing behind.
func setupPath(ctx context.Context, cfg Config, name, dir string) (_ *pathLab, err error) {
	cfg.Log("%s: building the lab", name)
	l, err := lab.New(ctx, lab.Options{Native6: name == Native})
	if err != nil {
		return nil, err
	}
	p := &pathLab{name: name, lab: l}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.close())
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	switch name {
	case Unmap:
		cfg.Log("%s: starting unmap relay and unmap edge", name)
		p.stop, err = setupUnmap(ctx, l, cfg.Unmap, dir)
	case WireGuard:
		wg := cfg.WireGuard
		if wg == "" {
			cfg.Log("%s: building %s", name, WireGuardModule)
			if wg, err = BuildWireGuard(ctx, dir); err != nil {
				return nil, err
			}
		}
		cfg.Log("%s: starting wireguard-go on edge and relay", name)
		p.stop, err = setupWireGuard(ctx, l, wg)
	}
	if err != nil {
		return nil, err
	}
	p.srv, err = startServers(l.NS(lab.Srv6))
	return p, err
}

// measure takes every figure of every path in one offload mode, one
// metric at a time across the paths.
func measure(ctx context.Context, cfg Config, paths []*pathLab, mode Offloads, rep *Report) error {
	add := func(p *pathLab, metric Metric, v float64) *Row {
		rep.Rows = append(rep.Rows, Row{Path: p.name, Offloads: mode, Metric: metric, Value: v})
		return &rep.Rows[len(rep.Rows)-1]
	}
	// First-packet loss first: its flows are the first of the mode.
	for _, p := range paths {
		cfg.Log("%s (%s): first packets of %d new UDP flows", p.name, mode, cfg.Flows)
		lost, err := firstPacketLoss(ctx, p.lab.NS(lab.LAN), cfg.Flows, 2*time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		add(p, FirstPacketLoss, float64(lost)).Of = cfg.Flows
	}
	for _, p := range paths {
		cfg.Log("%s (%s): largest packets", p.name, mode)
		up, down, err := largestPackets(ctx, p.lab.NS(lab.LAN))
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		add(p, LargestUp, float64(up))
		add(p, LargestDown, float64(down))
		echo, err := largestEcho(ctx, p.lab.NS(lab.LAN))
		if err != nil {
			return fmt.Errorf("%s: largest ICMPv6 echo: %w", p.name, err)
		}
		add(p, LargestEcho, float64(echo))
	}
	for _, p := range paths {
		cfg.Log("%s (%s): %d TCP connects", p.name, mode, cfg.Connects)
		times, err := connectTimes(ctx, p.lab.NS(lab.LAN), cfg.Connects)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		s := sortedCopy(times)
		cfg.Log("%s (%s): slowest connects %v", p.name, mode, slowest(times, 3))
		add(p, ConnectMedian, ms(quantile(s, 0.5))).Samples = msAll(times)
		add(p, ConnectP99, ms(quantile(s, 0.99)))
	}
	for _, p := range paths {
		cfg.Log("%s (%s): %d UDP round trips on one flow", p.name, mode, cfg.Pings)
		rtts, lost, err := udpRTT(ctx, p.lab.NS(lab.LAN), cfg.Pings, time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if lost > 0 {
			cfg.Log("%s (%s): %d of %d round trips lost", p.name, mode, lost, cfg.Pings)
		}
		s := sortedCopy(rtts)
		add(p, RTTMedian, ms(quantile(s, 0.5))).Samples = msAll(rtts)
		add(p, RTTP99, ms(quantile(s, 0.99)))
	}
	up := make([][]float64, len(paths))
	down := make([][]float64, len(paths))
	for round := range cfg.Rounds {
		for i, p := range paths {
			cfg.Log("%s (%s): TCP goodput up and down for %v each, round %d of %d", p.name, mode, cfg.Goodput, round+1, cfg.Rounds)
			bps, err := goodput(ctx, p.lab.NS(lab.LAN), p.srv, cfg.Goodput)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			dbps, err := goodputDown(ctx, p.lab.NS(lab.LAN), cfg.Goodput)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			cfg.Log("%s (%s): up %.2f Gbit/s, down %.2f Gbit/s", p.name, mode, bps/1e9, dbps/1e9)
			up[i] = append(up[i], bps/1e9)
			down[i] = append(down[i], dbps/1e9)
		}
	}
	for i, p := range paths {
		add(p, Goodput, median(up[i])).Samples = up[i]
		add(p, GoodputDown, median(down[i])).Samples = down[i]
	}
	return nil
}

// median of xs (the upper one of an even count), leaving xs alone.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// msAll is each duration in milliseconds.
func msAll(d []time.Duration) []float64 {
	out := make([]float64, len(d))
	for i, x := range d {
		out[i] = ms(x)
	}
	return out
}

// slowest names the n slowest connects, "#index: time", to tell a
// one-off stall (a scheduler hiccup on a busy machine) from a pattern.
func slowest(times []time.Duration, n int) []string {
	idx := make([]int, len(times))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(times[b], times[a]) })
	var out []string
	for _, i := range idx[:min(n, len(idx))] {
		out = append(out, fmt.Sprintf("#%d: %v", i+1, times[i].Round(time.Microsecond)))
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
