package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/unmap-dev/unmap/lab"
)

// ctMargin is left free in the kernel's conntrack table below
// nf_conntrack_max: a full table drops new flows (early drop), and the
// lab's own traffic needs entries too.
const ctMargin = 16384

// measureCGNAT takes every figure, one measurement at a time across the
// paths: the subscribers' first mappings (primed, so every subscriber
// holds a block), new mappings, the packet rate over each established
// set, memory, then TCP goodput.
func measureCGNAT(ctx context.Context, cfg CGNATConfig, paths []*cgnatPath, res *CGNATResults) error {
	var kernel *cgnatPath
	for _, p := range paths {
		if p.name == CGNATKernel {
			kernel = p
		}
	}
	kernelMax := cfg.Large
	if kernel != nil {
		v, err := kernel.lab.NS(lab.Relay).Sysctl("net.netfilter.nf_conntrack_max")
		if err != nil {
			return err
		}
		ctMax, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return err
		}
		kernelMax = min(cfg.Large, ctMax-ctMargin)
		if kernelMax < cfg.Small || kernelMax < cgnatSubs+cfg.Rounds*cfg.NewFlows {
			return fmt.Errorf("nf_conntrack_max is %d: too few for the bench's mappings", ctMax)
		}
		if kernelMax < cfg.Large {
			res.Notes = append(res.Notes, fmt.Sprintf("The kernel path is measured over at most %d mappings: nf_conntrack_max is %d here, "+
				"a global limit only the root namespace can raise (the bench does not touch it); its figure at %d stands in for %d, "+
				"where its table (%s buckets) would only be fuller.", kernelMax, ctMax, kernelMax, cfg.Large, sysctlOr(kernel, "net.netfilter.nf_conntrack_buckets")))
		}
	}
	slab0 := slabBytes()
	ct0 := 0
	if kernel != nil {
		ct0, _ = kernel.mappings()
	}
	for _, p := range paths {
		if err := p.generating(true); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}

	// Every subscriber's first flow: on the unmap path the relay grants
	// its first block (the first packet goes to the agent, which grants
	// and sends it on), as for any subscriber seen for the first time.
	for _, p := range paths {
		cfg.Log("%s: the %d subscribers' first flows", p.name, cgnatSubs)
		if err := warm(ctx, p, 0, cgnatSubs, cfg.Log); err != nil {
			return err
		}
	}

	// New mappings: each frame a flow never seen, from subscribers
	// holding a block with free ports (no grant on the way).
	row := CGNATRow{Metric: CGNATNew, Note: fmt.Sprintf("%d new flows a round, %d a subscriber, one frame each", cfg.NewFlows, cfg.NewFlows/cgnatSubs)}
	for r := range cfg.Rounds {
		for _, p := range paths {
			first := uint64(cgnatSubs + r*cfg.NewFlows)
			before, err := p.mappings()
			if err != nil {
				return err
			}
			s, err := p.send(first, 0, cfg.NewFlows)
			if err != nil {
				return fmt.Errorf("%s: new mappings: %w", p.name, err)
			}
			after, err := p.mappings()
			if err != nil {
				return err
			}
			if s.other != 0 {
				return fmt.Errorf("%s: %d frames arrived untranslated", p.name, s.other)
			}
			wall, cpu := s.rate()
			cfg.Log("%s: round %d: %d new flows sent, %d arrived translated, %d mappings made, in %v (CPU %v): %.0f new mappings/s (%.0f a CPU second)",
				p.name, r+1, s.frames, s.in, after-before, s.took.Round(time.Millisecond), s.cpu.Round(time.Millisecond), wall, cpu)
			row.add(p.name, wall, cpu)
		}
	}
	res.Rows = append(res.Rows, row.done())

	// Packet rate over established sets.
	type set struct {
		metric string
		n      int
	}
	sets := []set{{CGNATPPSSmall, cfg.Small}}
	if kernelMax < cfg.Large {
		sets = append(sets, set{CGNATPPSMid, kernelMax})
	}
	sets = append(sets, set{CGNATPPSLarge, cfg.Large})
	var memRow, atSrv4 CGNATRow
	for _, s := range sets {
		var on []*cgnatPath
		for _, p := range paths {
			if p.name == CGNATKernel && s.n > kernelMax {
				continue
			}
			on = append(on, p)
		}
		for _, p := range on {
			if p.relay != nil {
				cfg.Log("%s: relay agent CPU so far %v", p.name, p.relay.cpu())
			}
			cfg.Log("%s: %d established mappings", p.name, s.n)
			if err := warm(ctx, p, 0, s.n, cfg.Log); err != nil {
				return err
			}
			if p == kernel && s.n == kernelMax {
				// The kernel's memory: what the slab caches grew by for
				// its conntrack entries (every other cache's churn on the
				// machine is in it too).
				ct, err := kernel.mappings()
				if err != nil {
					return err
				}
				if d := slabBytes() - slab0; ct > ct0 && d > 0 {
					memRow.Kernel = float64(d) / float64(ct-ct0)
					memRow.KernelMappings = ct - ct0
				}
				cfg.Log("%s: %d conntrack entries, slab caches %+d bytes; a conntrack entry is a %d-byte slab object, its extensions (NAT's among them) a separate allocation",
					kernel.name, ct-ct0, slabBytes()-slab0, slabObject("nf_conntrack"))
			}
		}
		row := CGNATRow{Metric: s.metric, Mappings: s.n, Note: fmt.Sprintf("%d frames of %d bytes a round over %d flows", cfg.Frames, 64, s.n)}
		for r := range cfg.Rounds {
			for _, p := range on {
				sn, err := p.send(0, uint64(s.n), cfg.Frames)
				if err != nil {
					return fmt.Errorf("%s: %w", p.name, err)
				}
				if sn.other != 0 {
					return fmt.Errorf("%s: %d frames arrived untranslated", p.name, sn.other)
				}
				wall, cpu := sn.rate()
				cfg.Log("%s: round %d over %d mappings: %d frames sent, %d arrived (%.1f%%) in %v (CPU %v): %.3f Mpps (%.3f a CPU second)",
					p.name, r+1, s.n, sn.frames, sn.in, 100*float64(sn.in)/float64(max(sn.frames, 1)), sn.took.Round(time.Millisecond),
					sn.cpu.Round(time.Millisecond), wall/1e6, cpu/1e6)
				row.add(p.name, wall, cpu)
			}
			if s.n == cfg.Small && kernel != nil {
				wall, cpu, err := floor(kernel, cfg.Frames, s.n)
				if err != nil {
					return fmt.Errorf("floor: %w", err)
				}
				cfg.Log("floor: round %d: %.3f Mpps (%.3f a CPU second)", r+1, wall/1e6, cpu/1e6)
				res.FloorSamples = append(res.FloorSamples, wall)
				res.FloorCPUSamples = append(res.FloorCPUSamples, cpu)
			}
		}
		if s.n == cfg.Small {
			// The same frames counted at srv4 instead, through inet.
			srv4 := CGNATRow{Metric: CGNATPPSSrv4, Mappings: s.n, Note: "the small set's frames let through at inet and counted " +
				"on srv4's veth: through inet's kernel routing, which bounds both paths (a figure of the lab, not of the NAT)"}
			for r := range cfg.Rounds {
				for _, p := range on {
					sn, err := p.sendToSrv4(0, uint64(s.n), cfg.Frames)
					if err != nil {
						return fmt.Errorf("%s: at srv4: %w", p.name, err)
					}
					if sn.other != 0 {
						return fmt.Errorf("%s: %d frames arrived at srv4 untranslated", p.name, sn.other)
					}
					wall, cpu := sn.rate()
					cfg.Log("%s: round %d at srv4 over %d mappings: %d frames sent, %d arrived (%.1f%%) in %v (CPU %v): %.3f Mpps (%.3f a CPU second)",
						p.name, r+1, s.n, sn.frames, sn.in, 100*float64(sn.in)/float64(max(sn.frames, 1)), sn.took.Round(time.Millisecond),
						sn.cpu.Round(time.Millisecond), wall/1e6, cpu/1e6)
					srv4.add(p.name, wall, cpu)
				}
			}
			atSrv4 = srv4.done()
		}
		for _, p := range on {
			pr, err := profile(p, s.n, cfg.Frames)
			if err != nil {
				return fmt.Errorf("%s: profile: %w", p.name, err)
			}
			cfg.Log("profile: %v", pr)
			res.Profile = append(res.Profile, pr)
		}
		if s.n == cfg.Small && kernel != nil {
			for _, f := range []struct {
				name string
				prog *ebpf.Program
			}{{CGNATFloor, kernel.gen.Fwd()}, {CGNATFloorFIB, kernel.gen.FwdFIB()}} {
				pr, err := profileFloor(kernel, f.name, f.prog, s.n, cfg.Frames)
				if err != nil {
					return fmt.Errorf("%s: profile: %w", f.name, err)
				}
				cfg.Log("profile: %v", pr)
				res.Profile = append(res.Profile, pr)
			}
		}
		row = row.done()
		if row.Kernel == 0 && kernelMax < s.n {
			if mid, ok := res.Find(CGNATPPSMid); ok {
				row.Kernel, row.KernelSamples, row.KernelMappings = mid.Kernel, mid.KernelSamples, kernelMax
				row.KernelCPU, row.KernelCPUSamples = mid.KernelCPU, mid.KernelCPUSamples
			}
		}
		res.Rows = append(res.Rows, row)
		if s.n == cfg.Small {
			res.Rows = append(res.Rows, atSrv4)
		}
		if s.n == cfg.Large {
			for _, p := range paths {
				if p.name != CGNATUnmap {
					continue
				}
				n, err := p.mappings()
				if err != nil {
					return err
				}
				total, each, err := mapMemory(p.pins)
				if err != nil {
					return err
				}
				memRow.Unmap = float64(total) / float64(n)
				memRow.Mappings = n
				memRow.Note = fmt.Sprintf("unmap: the relay's CGNAT maps (the kernel's memlock) over the %d mappings it held: %s; "+
					"kernel: the slab caches' growth over its conntrack entries (a %d-byte nf_conntrack object each, and its extensions)", n, each, slabObject("nf_conntrack"))
				cfg.Log("unmap: %d mappings, %d bytes of CGNAT maps (%s)", n, total, each)
			}
		}
	}
	if slices.ContainsFunc(paths, func(p *cgnatPath) bool { return p.name == CGNATUnmap }) {
		memRow.Metric = CGNATMemory
		res.Rows = append(res.Rows, memRow)
	}
	if len(res.FloorSamples) > 0 {
		res.Floor, res.FloorCPU = median(res.FloorSamples), median(res.FloorCPUSamples)
	}

	// TCP goodput from the sub host, without the generator's pass program
	// on the kernel path (the kernel's best case: GRO on that veth).
	for _, p := range paths {
		if err := p.generating(false); err != nil {
			return err
		}
		// The sub host's first SYN may wait for its first block.
		if err := retryConnect(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	row = CGNATRow{Metric: CGNATGoodput, Note: fmt.Sprintf("one TCP stream of %v from the sub host to srv4, offloads as the lab has them", cfg.Goodput)}
	for r := range cfg.Rounds {
		for _, p := range paths {
			bps, err := goodputTo(ctx, p.lab.NS(lab.Sub), p.srv, netip.AddrPortFrom(lab.Srv4Addr, cgnatSinkPort), cfg.Goodput)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			cfg.Log("%s: round %d: tcp goodput %.2f Gbit/s", p.name, r+1, bps/1e9)
			row.add(p.name, bps/1e9, 0)
		}
	}
	res.Rows = append(res.Rows, row.done())
	return nil
}

// add appends a sample to a path's samples: the figure, and the rate a
// CPU second for rates (0 for others).
func (r *CGNATRow) add(path string, v, cpu float64) {
	if path == CGNATUnmap {
		r.UnmapSamples = append(r.UnmapSamples, v)
		if cpu > 0 {
			r.UnmapCPUSamples = append(r.UnmapCPUSamples, cpu)
		}
	} else {
		r.KernelSamples = append(r.KernelSamples, v)
		if cpu > 0 {
			r.KernelCPUSamples = append(r.KernelCPUSamples, cpu)
		}
	}
}

// done sets the values to the samples' medians.
func (r CGNATRow) done() CGNATRow {
	for _, x := range []struct {
		to      *float64
		samples []float64
	}{{&r.Unmap, r.UnmapSamples}, {&r.Kernel, r.KernelSamples}, {&r.UnmapCPU, r.UnmapCPUSamples}, {&r.KernelCPU, r.KernelCPUSamples}} {
		if len(x.samples) > 0 {
			*x.to = median(x.samples)
		}
	}
	return r
}

// warm sends the flows [first, first+count) until one pass arrives
// whole: every flow then has its mapping (on the unmap path a flow
// whose subscriber's blocks are full goes to the agent, which grants
// the next block; the pass after finds it). It gives up after five
// minutes, or after ten passes that brought nothing new.
func warm(ctx context.Context, p *cgnatPath, first uint64, count int, log func(string, ...any)) error {
	var s sent
	var err error
	deadline := time.Now().Add(5 * time.Minute)
	best, stale := uint64(0), 0
	for pass := 1; ; pass++ {
		if s, err = p.send(first, uint64(count), count); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if s.other != 0 {
			return fmt.Errorf("%s: %d frames arrived untranslated", p.name, s.other)
		}
		if s.in == s.frames {
			return nil
		}
		log("%s: pass %d over %d flows: %d arrived", p.name, pass, count, s.in)
		if s.in > best {
			best, stale = s.in, 0
		} else if stale++; stale >= 10 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("%s: %d flows never all arrived (last pass %d of %d)", p.name, count, s.in, s.frames)
}

// floor measures the chain without a NAT on the kernel path's lab: the
// relay's sub veth redirects every frame to its inet veth untouched.
func floor(p *cgnatPath, frames, flows int) (wall, cpu float64, err error) {
	fl, err := p.floorOn(p.gen.Fwd())
	if err != nil {
		return 0, 0, err
	}
	s, err := p.send(0, uint64(flows), frames)
	err = errors.Join(err, fl.Close(), p.generating(true))
	if err != nil {
		return 0, 0, err
	}
	s.in = s.other // untranslated, as they should be
	wall, cpu = s.rate()
	return wall, cpu, nil
}

// floorOn puts prog on the relay's sub veth in place of the generator's
// pass program; close the link and call generating(true) after.
func (p *cgnatPath) floorOn(prog *ebpf.Program) (link.Link, error) {
	if err := p.generating(false); err != nil {
		return nil, err
	}
	var fl link.Link
	err := p.lab.NS(lab.Relay).Do(func() error {
		ifi, err := net.InterfaceByName(string(lab.Sub))
		if err != nil {
			return err
		}
		fl, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	return fl, err
}

// retryConnect connects from the sub host to srv4's sink until it works
// (10 s): the sink sees an empty stream, which goodput never waits for.
func retryConnect(ctx context.Context, p *cgnatPath) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := p.lab.NS(lab.Sub).Dial(cctx, "tcp4", netip.AddrPortFrom(lab.Srv4Addr, cgnatSinkPort).String())
		cancel()
		if err == nil {
			c.Close()
			// Drop the empty stream the sink reports for it.
			select {
			case <-p.srv.streams:
			case <-time.After(2 * time.Second):
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sub to srv4: %w", err)
		}
	}
}

// slabBytes is the kernel's slab memory (/proc/meminfo Slab).
func slabBytes() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Slab:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// slabObject is the object size of a slab cache (/proc/slabinfo), 0
// when it has none.
func slabObject(cache string) int {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == cache {
			n, _ := strconv.Atoi(f[3])
			return n
		}
	}
	return 0
}

// mapMemory is the memory of the relay's CGNAT maps (every pinned map
// named cg_*) as the kernel accounts it (memlock in fdinfo), in total
// and map by map.
func mapMemory(pins string) (int64, string, error) {
	ents, err := os.ReadDir(pins)
	if err != nil {
		return 0, "", err
	}
	var total int64
	var each []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "cg_") {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(pins, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return 0, "", err
		}
		n, err := memlock(m)
		m.Close()
		if err != nil {
			return 0, "", err
		}
		total += n
		each = append(each, fmt.Sprintf("%s %d", e.Name(), n))
	}
	if total == 0 {
		return 0, "", fmt.Errorf("no CGNAT maps pinned in %s", pins)
	}
	return total, strings.Join(each, ", "), nil
}

// memlock is the kernel's account of a map's memory (fdinfo memlock).
func memlock(m *ebpf.Map) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no memlock in fdinfo")
}

func sysctlOr(p *cgnatPath, key string) string {
	v, err := p.lab.NS(lab.Relay).Sysctl(key)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(v)
}
