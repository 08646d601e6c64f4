package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The CGNAT bench (`unmap bench cgnat`): the relay's XDP CGNAT against
// the kernel's NAT configured as an operator would (nftables snat to the
// same pool, conntrack), in the lab's relay namespace with subscribers
// on its `sub` link and srv4 beyond inet. Each path has a lab of its
// own; both are up together and the measurements take turns, so load
// from elsewhere falls on both alike. See README.md, "The CGNAT bench".
const (
	CGNATUnmap  = "unmap"    // `unmap relay` with a cgnat section: NAT44 in XDP
	CGNATKernel = "nftables" // snat to the same pool, persistent, conntrack
)

// The floors' names in the profile: the chain with an XDP redirect in
// the NAT's place, and with a FIB lookup before it (what a router in XDP
// does for each packet, unmap's NAT among them).
const (
	CGNATFloor    = "floor: redirect"
	CGNATFloorFIB = "floor: FIB lookup + redirect"
)

// CGNATPaths lists the paths in the order they take turns.
var CGNATPaths = []string{CGNATUnmap, CGNATKernel}

// CGNATConfig says what the CGNAT bench measures and how long. The zero
// value of a field means its default.
type CGNATConfig struct {
	// Unmap is the unmap binary the relay runs from (required).
	Unmap string `json:"-"`
	// Small and Large are the established mappings the packet rate is
	// measured over (defaults 10,000 and 1,000,000). The kernel is
	// measured at Large too when its conntrack table can hold that
	// many, else at the most it can (nf_conntrack_max, a global limit
	// only the root namespace may raise, less a margin).
	Small int `json:"small"`
	Large int `json:"large"`
	// Frames is the frames sent for one packet-rate measurement
	// (default 2,000,000).
	Frames int `json:"frames"`
	// NewFlows is the new mappings made in one new-mapping measurement
	// (default 64,512: 126 a subscriber).
	NewFlows int `json:"new_flows"`
	// Rounds is how many times each measurement takes its turn on each
	// path (default 3); the median is reported.
	Rounds int `json:"rounds"`
	// Goodput is how long each TCP stream runs (default 3 s).
	Goodput time.Duration `json:"goodput_ns"`
	// Log receives a line per step; nil discards them.
	Log func(format string, args ...any) `json:"-"`
}

// CGNATShort measures everything in a few seconds a path, for tests.
func CGNATShort() CGNATConfig {
	return CGNATConfig{Small: 1000, Large: 20_000, Frames: 100_000, NewFlows: 5120, Rounds: 1, Goodput: time.Second}
}

func (c CGNATConfig) withDefaults() CGNATConfig {
	if c.Small <= 0 {
		c.Small = 10_000
	}
	if c.Large <= 0 {
		c.Large = 1_000_000
	}
	if c.Frames <= 0 {
		c.Frames = 2_000_000
	}
	if c.NewFlows <= 0 {
		c.NewFlows = 64_512
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Goodput <= 0 {
		c.Goodput = 3 * time.Second
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	return c
}

// Validate reports the first field that cannot be used.
func (c CGNATConfig) Validate() error {
	for name, v := range map[string]int{"small": c.Small, "large": c.Large, "frames": c.Frames, "new flows": c.NewFlows, "rounds": c.Rounds} {
		if v < 0 {
			return fmt.Errorf("%s: %d is negative", name, v)
		}
	}
	if c.Goodput < 0 {
		return fmt.Errorf("goodput: %v is negative", c.Goodput)
	}
	c = c.withDefaults()
	switch {
	case c.Small > c.Large:
		return fmt.Errorf("small (%d) is more than large (%d)", c.Small, c.Large)
	case c.Large > cgnatSubs*cgnatSubPorts:
		return fmt.Errorf("large: %d mappings is more than %d subscribers can hold (%d ports each)", c.Large, cgnatSubs, cgnatSubPorts)
	case cgnatSubs+c.Rounds*c.NewFlows > cgnatSubs*cgnatNewPorts:
		return fmt.Errorf("new flows: %d rounds of %d is more than %d subscribers' first blocks hold before the next is asked for (%d each)",
			c.Rounds, c.NewFlows, cgnatSubs, cgnatNewPorts)
	case c.Frames < c.Small:
		return fmt.Errorf("frames: %d is fewer than the small set's %d flows", c.Frames, c.Small)
	}
	return nil
}

// The CGNAT bench's figures.
const (
	CGNATPPSSmall = "udp packets/s, small set"         // 64-byte frames over Small established mappings
	CGNATPPSMid   = "udp packets/s, kernel max"        // over the most the kernel holds, when less than Large
	CGNATPPSLarge = "udp packets/s, large set"         // over Large established mappings
	CGNATPPSSrv4  = "udp packets/s at srv4, small set" // counted at srv4, through inet's kernel routing
	CGNATNew      = "new mappings/s"
	CGNATGoodput  = "tcp goodput sub to srv4 (Gbit/s)"
	CGNATMemory   = "map memory per mapping (bytes)"
)

// CGNATRow is one figure of both paths. A path's value is 0 when it was
// not measured (Note says why).
type CGNATRow struct {
	Metric   string  `json:"metric"`
	Mappings int     `json:"mappings,omitempty"` // established mappings it was measured over
	Unmap    float64 `json:"unmap"`
	Kernel   float64 `json:"kernel"`
	// KernelMappings is the mappings the kernel's figure was measured
	// over, when not Mappings (its conntrack table holds fewer).
	KernelMappings int `json:"kernel_mappings,omitempty"`
	// Samples of each path, in the order taken (the value is their
	// median): one a round.
	UnmapSamples  []float64 `json:"unmap_samples,omitempty"`
	KernelSamples []float64 `json:"kernel_samples,omitempty"`
	// UnmapCPU and KernelCPU are a rate's figure over the sending
	// thread's CPU time instead of the wall clock (livegen.Send): what a
	// core does when nothing else takes it away, on this shared machine
	// the steadier of the two. 0 for figures that are not rates.
	UnmapCPU         float64   `json:"unmap_cpu,omitempty"`
	KernelCPU        float64   `json:"kernel_cpu,omitempty"`
	UnmapCPUSamples  []float64 `json:"unmap_cpu_samples,omitempty"`
	KernelCPUSamples []float64 `json:"kernel_cpu_samples,omitempty"`
	Note             string    `json:"note,omitempty"`
}

// RatioCPU is unmap's rate a CPU second over the kernel's (0 without
// both).
func (r CGNATRow) RatioCPU() float64 {
	if r.UnmapCPU == 0 || r.KernelCPU == 0 {
		return 0
	}
	return r.UnmapCPU / r.KernelCPU
}

// Ratio is unmap's figure over the kernel's (0 without both).
func (r CGNATRow) Ratio() float64 {
	if r.Unmap == 0 || r.Kernel == 0 {
		return 0
	}
	return r.Unmap / r.Kernel
}

// RoundRatios are the lowest and highest of unmap's figure over the
// kernel's round by round (the paths take turns, so the samples of one
// index were taken one after the other); 0, 0 without two rounds of
// both.
func (r CGNATRow) RoundRatios() (lo, hi float64) {
	n := min(len(r.UnmapSamples), len(r.KernelSamples))
	if n < 2 {
		return 0, 0
	}
	for i := range n {
		if r.KernelSamples[i] <= 0 {
			return 0, 0
		}
		q := r.UnmapSamples[i] / r.KernelSamples[i]
		if i == 0 || q < lo {
			lo = q
		}
		hi = max(hi, q)
	}
	return lo, hi
}

// CGNATTargets are issue 12's: the ratio unmap must reach (≥) for the
// rates, the bytes it must stay within (≤) for memory.
var CGNATTargets = map[string]float64{
	CGNATPPSSmall: 3, CGNATPPSMid: 3, CGNATPPSLarge: 3, CGNATNew: 2, CGNATMemory: 128,
}

// CGNATResults is one run of the CGNAT bench, as saved by --json.
type CGNATResults struct {
	Machine Machine     `json:"machine"`
	Config  CGNATConfig `json:"config"`
	Rows    []CGNATRow  `json:"rows"`
	// Floor is the chain's own rate without any NAT (generator, an XDP
	// redirect in the relay, the counter): what both paths' packet
	// rates are bounded by on this machine, one sample a round.
	Floor           float64   `json:"floor_pps"`
	FloorSamples    []float64 `json:"floor_samples,omitempty"`
	FloorCPU        float64   `json:"floor_cpu_pps,omitempty"`
	FloorCPUSamples []float64 `json:"floor_cpu_samples,omitempty"`
	// Load is the machine's 1-minute load average at the start and the
	// end of the run (other work on the machine's cores).
	Load [2]float64 `json:"load"`
	// RelayCPU is the CPU time the relay agent used during the run, in
	// seconds (its sweep reads every mapping every 10 s).
	RelayCPU float64 `json:"relay_cpu_s"`
	// Profile is each path's time per packet by part, over each
	// established set (an extra send, with BPF statistics on).
	Profile []CGNATProfile `json:"profile,omitempty"`
	// Rules is the kernel path's nftables ruleset, as nft would list it.
	Rules string `json:"rules"`
	// Notes say what a reader needs to read the figures.
	Notes []string `json:"notes,omitempty"`
}

// Find returns the row of a metric.
func (r *CGNATResults) Find(metric string) (CGNATRow, bool) {
	for _, row := range r.Rows {
		if row.Metric == metric {
			return row, true
		}
	}
	return CGNATRow{}, false
}

// CGNATJSON is the saved results' name in a report's folder.
const CGNATJSON = "cgnat.json"

// ReadCGNATResults reads what `unmap bench cgnat --json` saved.
func ReadCGNATResults(path string) (*CGNATResults, error) {
	var r CGNATResults
	if err := readJSON(path, &r); err != nil {
		return nil, err
	}
	if len(r.Rows) == 0 {
		return nil, fmt.Errorf("%s: no cgnat rows", path)
	}
	for _, row := range r.Rows {
		if row.Metric == "" || row.Unmap < 0 || row.Kernel < 0 {
			return nil, fmt.Errorf("%s: bad row %+v", path, row)
		}
	}
	return &r, nil
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

// RunCGNAT runs the CGNAT bench. It needs root. The rows measured so far
// are returned with the first error.
func RunCGNAT(ctx context.Context, cfg CGNATConfig) (res *CGNATResults, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench cgnat needs root: it builds network namespaces and loads BPF programs")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Unmap == "" {
		return nil, errors.New("bench cgnat: no unmap binary given")
	}
	dir, err := os.MkdirTemp("", "unmap-bench-cgnat-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res = &CGNATResults{Config: cfg, Rules: nftRules(cgnatPool(cfg))}
	res.Load[0] = loadAvg()
	var paths []*cgnatPath
	defer func() {
		for _, p := range paths {
			err = errors.Join(err, p.close())
		}
	}()
	for _, name := range CGNATPaths {
		p, err := setupCGNAT(ctx, cfg, name, filepath.Join(dir, name))
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		paths = append(paths, p)
	}
	err = measureCGNAT(ctx, cfg, paths, res)
	res.Load[1] = loadAvg()
	for _, p := range paths {
		if p.relay != nil {
			res.RelayCPU = p.relay.cpu().Seconds()
		}
	}
	return res, err
}

// CGNATProfile is where one path's time per packet goes, from the
// kernel's BPF run-time statistics over one extra send: the generator's
// program, the NAT's XDP program (unmap only: the kernel's NAT is not a
// BPF program), the counter's, and the rest of the sending thread's CPU
// time (veths, redirects, and on the kernel path the stack: skb,
// conntrack, NAT, routing).
type CGNATProfile struct {
	Path      string  `json:"path"`
	Mappings  int     `json:"mappings"`
	WallNs    float64 `json:"wall_ns"`    // send time over frames that arrived
	CPUNs     float64 `json:"cpu_ns"`     // the sending thread's CPU time over frames that arrived
	GenNs     float64 `json:"gen_ns"`     // the generator's program, a run
	NATNs     float64 `json:"nat_ns"`     // the relay's relay_sub program, a run (unmap)
	CounterNs float64 `json:"counter_ns"` // the counter's program, a run
}
