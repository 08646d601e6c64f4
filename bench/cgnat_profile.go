package bench

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// profile sends frames over the first n flows once more with the
// kernel's BPF run-time statistics on (BPF_ENABLE_STATS: on for every
// program on the machine while the bench holds it, a clock read more a
// run, so only for this send) and splits the time per packet by part.
func profile(p *cgnatPath, n, frames int) (CGNATProfile, error) {
	return profileWith(p, p.name, nil, n, frames)
}

// profileFloor profiles the floor on the kernel path's lab: prog (the
// floor's redirect, with or without a FIB lookup) in place of the NAT,
// its runs in the NAT's column.
func profileFloor(p *cgnatPath, name string, prog *ebpf.Program, n, frames int) (pr CGNATProfile, err error) {
	fl, err := p.floorOn(prog)
	if err != nil {
		return pr, err
	}
	pr, err = profileWith(p, name, prog, n, frames)
	return pr, errors.Join(err, fl.Close(), p.generating(true))
}

// profileWith profiles a send on p's lab; nat is the program in the
// NAT's place (nil: the relay's own on the unmap path, none on the
// kernel path). On the floor nothing is translated: what arrived is
// what the counter saw untranslated.
func profileWith(p *cgnatPath, name string, nat *ebpf.Program, n, frames int) (CGNATProfile, error) {
	pr := CGNATProfile{Path: name, Mappings: n}
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return pr, fmt.Errorf("BPF statistics: %w", err)
	}
	defer stats.Close()
	progs := map[*float64]*ebpf.Program{&pr.GenNs: p.gen.Gen(), &pr.CounterNs: p.gen.Counter()}
	if nat != nil {
		progs[&pr.NATNs] = nat
	} else if p.name == CGNATUnmap {
		id, err := p.subProgID()
		if err != nil || id == 0 {
			return pr, fmt.Errorf("the relay's XDP program on sub: id %d, %v", id, err)
		}
		prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			return pr, err
		}
		defer prog.Close()
		progs[&pr.NATNs] = prog
	}
	before := map[*float64]*ebpf.ProgramStats{}
	for to, prog := range progs {
		if before[to], err = prog.Stats(); err != nil {
			return pr, err
		}
	}
	s, err := p.send(0, uint64(n), frames)
	if err != nil {
		return pr, err
	}
	if nat != nil {
		s.in = s.other
	}
	for to, prog := range progs {
		after, err := prog.Stats()
		if err != nil {
			return pr, err
		}
		if runs := after.RunCount - before[to].RunCount; runs > 0 {
			*to = float64(after.Runtime-before[to].Runtime) / float64(runs)
		}
	}
	if s.in > 0 {
		pr.WallNs = float64(s.took) / float64(s.in)
		pr.CPUNs = float64(s.cpu) / float64(s.in)
	}
	return pr, nil
}

// String is the profile as one log line.
func (pr CGNATProfile) String() string {
	return fmt.Sprintf("%s over %d mappings: %.0f ns a packet on the wall clock, %.0f of the sending thread's CPU; programs: generator %.0f ns, NAT %.0f ns, counter %.0f ns; the rest of the CPU time %.0f ns",
		pr.Path, pr.Mappings, pr.WallNs, pr.CPUNs, pr.GenNs, pr.NATNs, pr.CounterNs, pr.Rest())
}

// Rest is the CPU time a packet not spent in the three programs.
func (pr CGNATProfile) Rest() float64 {
	return pr.CPUNs - pr.GenNs - pr.NATNs - pr.CounterNs
}
