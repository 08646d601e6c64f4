package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// cgnatValue formats a figure in its metric's unit.
func cgnatValue(metric string, v float64) string {
	switch {
	case v == 0:
		return "-"
	case strings.Contains(metric, "Gbit"):
		return fmt.Sprintf("%.2f", v)
	case strings.Contains(metric, "/s"):
		return fmt.Sprintf("%.3fM", v/1e6)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// cgnatTarget says a row's target and whether unmap meets it: a ratio
// for the rates, bytes for memory; "" when the row has none.
func cgnatTarget(r CGNATRow) (target string, met bool) {
	t, ok := CGNATTargets[r.Metric]
	switch {
	case !ok:
		return "", true
	case r.Metric == CGNATMemory:
		return fmt.Sprintf("<= %.0f bytes", t), r.Unmap > 0 && r.Unmap <= t
	default:
		return fmt.Sprintf(">= %.0fx", t), r.Ratio() >= t
	}
}

// mappingsLabel says over how many established mappings a row was
// measured, and the kernel's count when it differs.
func mappingsLabel(r CGNATRow) string {
	if r.Mappings == 0 {
		return ""
	}
	s := fmt.Sprint(r.Mappings)
	if r.KernelMappings != 0 && r.KernelMappings != r.Mappings {
		s += fmt.Sprintf(" (kernel %d)", r.KernelMappings)
	}
	return s
}

// ratioCell formats a ratio, "-" for none.
func ratioCell(q float64) string {
	if q <= 0 {
		return "-"
	}
	return ratio(q)
}

// roundsCell is a row's ratio with its range round by round (RoundRatios)
// when there are several rounds: a target met by the median alone is
// told from one met in every round.
func roundsCell(r CGNATRow, sep string) string {
	s := ratioCell(r.Ratio())
	if lo, hi := r.RoundRatios(); lo > 0 {
		s += fmt.Sprintf(" (%.2f%s%.2f)", lo, sep, hi)
	}
	return s
}

// WriteTable writes the results as a text table: each figure of both
// paths, unmap's ratio to the kernel's and the target; for rates also
// the figure over the sending thread's CPU time and its ratio.
func (r *CGNATResults) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tmappings\tunmap\tnftables\tratio (by round)\tunmap/cpu-s\tnftables/cpu-s\tratio (cpu)\ttarget\t")
	for _, row := range r.Rows {
		t, met := cgnatTarget(row)
		if t != "" && !met {
			t += " MISSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.Metric, mappingsLabel(row),
			cgnatValue(row.Metric, row.Unmap), cgnatValue(row.Metric, row.Kernel), roundsCell(row, "-"),
			cgnatValue(row.Metric, row.UnmapCPU), cgnatValue(row.Metric, row.KernelCPU), ratioCell(row.RatioCPU()), t)
	}
	if r.Floor > 0 {
		fmt.Fprintf(tw, "floor: no NAT\t\t%s\t\t\t%s\t\t\t\t\n", cgnatValue("/s", r.Floor), cgnatValue("/s", r.FloorCPU))
	}
	for _, pr := range r.Profile {
		fmt.Fprintf(tw, "profile: %v\t\t\t\t\t\t\t\t\t\n", pr)
	}
	fmt.Fprintf(tw, "load average %.2f at the start, %.2f at the end; relay agent CPU %.1f s\t\t\t\t\t\t\t\t\t\n", r.Load[0], r.Load[1], r.RelayCPU)
	return tw.Flush()
}
