package bench

import (
	"fmt"
	"slices"
	"strings"

	"gonum.org/v1/plot"
)

// The CGNAT bench's part of the report: a table of every figure of both
// paths with unmap's ratio and issue 12's target, the profile, the
// kernel's ruleset, and a plot of the rates.

const cgnatSVG = "cgnat.svg"

// cgnatRates are the rows the plot shows, in millions a second.
var cgnatRates = []string{CGNATNew, CGNATPPSSmall, CGNATPPSMid, CGNATPPSLarge}

func writeCGNAT(b *strings.Builder, r *CGNATResults) {
	b.WriteString("## The relay's CGNAT against the kernel's NAT (`unmap bench cgnat`)\n\n")
	writeMachine(b, r.Machine)
	c := r.Config.withDefaults()
	fmt.Fprintf(b, "In the lab's relay namespace, each path in a lab of its own, the paths taking turns (%d rounds; "+
		"a figure is the median, the range in brackets): `unmap relay` with a `cgnat` section (NAT44 in XDP, "+
		"endpoint-independent, 512-port blocks) against nftables snat to the same pool with conntrack, as an "+
		"operator would configure the kernel. %d subscribers behind the relay's `sub` link send 64-byte UDP frames "+
		"to srv4, made by a BPF program in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`) on the sub host's veth; "+
		"an XDP program on inet's veth from the relay counts what arrives translated and drops it there, so a "+
		"figure is what the NAT delivered (%d frames a packet-rate measurement). Everything runs on the same "+
		"two cores: the generator, both veth hops and the counter are in every packet's time, which the floor "+
		"row measures without a NAT. Load average %.2f at the start, %.2f at the end.\n\n",
		c.Rounds, cgnatSubs, c.Frames, r.Load[0], r.Load[1])
	if cgnatPlotted(r) {
		b.WriteString("![CGNAT rates: unmap and nftables](" + cgnatSVG + ")\n\n")
	}
	b.WriteString("| figure | mappings | unmap | nftables | unmap vs nftables | unmap a CPU second | nftables a CPU second | unmap vs nftables (CPU) | target |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, row := range r.Rows {
		t, met := cgnatTarget(row)
		switch {
		case t == "":
		case met:
			t += ": met"
		case row.Metric == CGNATMemory:
			t += fmt.Sprintf(": **missed** by %.1f bytes", row.Unmap-CGNATTargets[row.Metric])
		default:
			t += fmt.Sprintf(": **missed** (%.0f%% of it)", 100*row.Ratio()/CGNATTargets[row.Metric])
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Metric, mappingsLabel(row),
			cgnatCell(row.Metric, row.Unmap, row.UnmapSamples), cgnatCell(row.Metric, row.Kernel, row.KernelSamples), roundsCell(row, "–"),
			cgnatCell(row.Metric, row.UnmapCPU, row.UnmapCPUSamples), cgnatCell(row.Metric, row.KernelCPU, row.KernelCPUSamples), ratioCell(row.RatioCPU()), t)
	}
	if r.Floor > 0 {
		fmt.Fprintf(b, "| floor: no NAT (generator, an XDP redirect in the relay, counter) |  | %s |  |  | %s |  |  |  |\n",
			cgnatCell("/s", r.Floor, r.FloorSamples), cgnatCell("/s", r.FloorCPU, r.FloorCPUSamples))
	}
	b.WriteString("\nRates are in millions a second, goodput in Gbit/s, memory in bytes a mapping. ")
	b.WriteString("The ratio's brackets hold its lowest and highest round by round (the paths take turns, so each round's " +
		"pair was measured back to back). For memory the ratio is unmap's bytes over the kernel's (lower is better). ")
	b.WriteString("A rate a CPU second is the frames that arrived over the sending thread's CPU time instead of the wall clock: " +
		"the frames' whole way (veths, the NAT, the counter) runs in softirq on the sending CPU, which this kernel's " +
		"tick-based accounting charges to the thread, so it leaves out the time other work took the CPU away. " +
		"The target is judged on the wall-clock ratio.\n\n")
	for _, row := range r.Rows {
		if row.Note != "" {
			fmt.Fprintf(b, "- %s: %s.\n", row.Metric, row.Note)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	fmt.Fprintf(b, "- The relay agent used %.1f s of CPU during the run.\n\n", r.RelayCPU)
	if len(r.Profile) > 0 {
		b.WriteString("Where a packet's time goes (one more send per path and set with the kernel's BPF run-time " +
			"statistics on, which add a clock read to each program run), in ns a packet: the wall clock of the sending " +
			"and the sending thread's CPU time over the frames that arrived, the generator's, the relay's `relay_sub` " +
			"(or the floor's redirect) and the counter's programs a run, and the rest of the CPU time (veths, redirects, " +
			"page pool; on the kernel path the whole stack: skb, conntrack, NAT, routing). The floors: the chain with an " +
			"XDP redirect in the NAT's place, and with the FIB lookup a router in XDP makes before it.\n\n")
		b.WriteString("| path | mappings | wall | CPU | generator | NAT (floor) program | counter | the rest |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range r.Profile {
			nat := "-"
			if p.NATNs > 0 {
				nat = fmt.Sprintf("%.0f", p.NATNs)
			}
			fmt.Fprintf(b, "| %s | %d | %.0f | %.0f | %.0f | %s | %.0f | %.0f |\n", p.Path, p.Mappings, p.WallNs, p.CPUNs, p.GenNs, nat, p.CounterNs, p.Rest())
		}
		b.WriteString("\n")
	}
	b.WriteString("The kernel path's ruleset (installed from Go with google/nftables):\n\n```\n" + r.Rules + "\n```\n\n")
}

// cgnatCell is a figure with its samples' range when there are several.
func cgnatCell(metric string, v float64, samples []float64) string {
	s := cgnatValue(metric, v)
	if v == 0 || len(samples) < 2 {
		return s
	}
	return s + " (" + strings.TrimSuffix(cgnatValue(metric, slices.Min(samples)), "M") + "–" +
		strings.TrimSuffix(cgnatValue(metric, slices.Max(samples)), "M") + ")"
}

func cgnatPlotted(r *CGNATResults) bool {
	for _, m := range cgnatRates {
		if _, ok := r.Find(m); ok {
			return true
		}
	}
	return false
}

// cgnatPlot draws the rates of both paths, bars with their rounds'
// range, unmap's ratio to the kernel above its bar.
func cgnatPlot(r *CGNATResults) (*plot.Plot, error) {
	var groups []group
	for _, m := range cgnatRates {
		row, ok := r.Find(m)
		if !ok {
			continue
		}
		label := m
		if row.Mappings > 0 {
			label = fmt.Sprintf("packets/s\n%d mappings", row.Mappings)
			if row.KernelMappings != 0 && row.KernelMappings != row.Mappings {
				label += fmt.Sprintf("\n(nftables %d)", row.KernelMappings)
			}
		}
		mil := func(xs []float64) []float64 {
			out := make([]float64, len(xs))
			for i, x := range xs {
				out[i] = x / 1e6
			}
			return out
		}
		g := group{label: label, rows: map[string]Row{}}
		if row.Unmap > 0 {
			g.rows[CGNATUnmap] = Row{Path: CGNATUnmap, Value: row.Unmap / 1e6, Samples: mil(row.UnmapSamples), Ratio: row.Ratio()}
		}
		if row.Kernel > 0 {
			g.rows[CGNATKernel] = Row{Path: CGNATKernel, Value: row.Kernel / 1e6, Samples: mil(row.KernelSamples)}
		}
		groups = append(groups, g)
	}
	return barPlot("CGNAT: unmap (XDP) vs nftables snat, millions a second", "millions a second", CGNATPaths, groups, 0,
		func(row Row) string {
			if row.Ratio == 0 {
				return ""
			}
			return ratio(row.Ratio)
		})
}
