package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// The report `unmap bench report` writes: a Markdown page (README.md, so
// a repository browser shows it for the folder) with the figures as
// tables, the plots as SVG beside it, and the results it was made from
// as JSON, so it can be made again without measuring again.

// File names in a report's folder.
const (
	ReportPage  = "README.md"
	LabJSON     = "lab.json"
	XDPJSON     = "xdp.json"
	goodputSVG  = "goodput.svg"
	connectSVG  = "connect.svg"
	rttSVG      = "rtt.svg"
	mtuSVG      = "mtu.svg"
	xdpSVG      = "xdp.svg"
	plotHeight  = 4 * vg.Inch
	xdpRowSpace = 0.42 * vg.Inch
)

// WriteReport writes the report of lab, xdp and cgnat results (any may
// be nil, not all) into dir: the page, its plots and the results as
// JSON.
func WriteReport(dir string, lab *LabResults, x *XDPResults, cg *CGNATResults) error {
	if lab == nil && x == nil && cg == nil {
		return errors.New("bench report: no results")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if lab != nil {
		if err := WriteJSON(filepath.Join(dir, LabJSON), lab); err != nil {
			return err
		}
		if err := labPlots(dir, lab.Report()); err != nil {
			return err
		}
	}
	if x != nil {
		if err := WriteJSON(filepath.Join(dir, XDPJSON), x); err != nil {
			return err
		}
		p, err := xdpPlot(x)
		if err != nil {
			return err
		}
		h := max(3*vg.Inch, xdpRowSpace*vg.Length(len(x.Paths))+vg.Inch)
		if err := saveSVG(p, plotWidth, h, dir, xdpSVG); err != nil {
			return err
		}
	}
	if cg != nil {
		if err := WriteJSON(filepath.Join(dir, CGNATJSON), cg); err != nil {
			return err
		}
		if cgnatPlotted(cg) {
			p, err := cgnatPlot(cg)
			if err != nil {
				return err
			}
			if err := saveSVG(p, plotWidth, plotHeight, dir, cgnatSVG); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, ReportPage), []byte(Markdown(lab, x, cg)), 0o644)
}

// pathsOf lists the paths of rep's rows: those of Paths first, in order.
func pathsOf(rep *Report) []string {
	var out []string
	for _, p := range Paths {
		if slices.ContainsFunc(rep.Rows, func(r Row) bool { return r.Path == p }) {
			out = append(out, p)
		}
	}
	for _, r := range rep.Rows {
		if !slices.Contains(out, r.Path) {
			out = append(out, r.Path)
		}
	}
	return out
}

// modesOf lists the offload modes of rep's rows, in the order run.
func modesOf(rep *Report) []Offloads {
	var out []Offloads
	for _, r := range rep.Rows {
		if !slices.Contains(out, r.Offloads) {
			out = append(out, r.Offloads)
		}
	}
	return out
}

// groupOf is the rows of one metric and mode, by path.
func groupOf(rep *Report, label string, mode Offloads, m Metric) group {
	g := group{label: label, rows: map[string]Row{}}
	for _, r := range rep.Rows {
		if r.Offloads == mode && r.Metric == m {
			g.rows[r.Path] = r
		}
	}
	return g
}

func ratioLabel(r Row) string {
	if r.Ratio == 0 {
		return ""
	}
	return ratio(r.Ratio)
}

// figure is one plot of the lab's page: its file, its alt text, and how
// it is drawn.
type figure struct {
	file, alt string
	draw      func() (*plot.Plot, error)
}

// labFigures lists the plots rep has data for: a run of some paths or
// some metrics (or a hand-made file) leaves the others out, rather than
// drawing empty axes (or failing: a log axis needs values).
func labFigures(rep *Report) []figure {
	paths, modes := pathsOf(rep), modesOf(rep)
	if len(modes) == 0 {
		return nil
	}
	var gp, conn, rtt []group
	for _, mode := range modes {
		gp = append(gp, groupOf(rep, "up\n"+modeLabel(mode), mode, Goodput), groupOf(rep, "down\n"+modeLabel(mode), mode, GoodputDown))
		conn = append(conn, groupOf(rep, modeLabel(mode), mode, ConnectMedian))
		rtt = append(rtt, groupOf(rep, modeLabel(mode), mode, RTTMedian))
	}
	// Packet sizes do not depend on the offloads (the table has both
	// modes): the first mode's.
	m := modes[0]
	mtu := []group{groupOf(rep, "up", m, LargestUp), groupOf(rep, "down", m, LargestDown), groupOf(rep, "ICMPv6 echo", m, LargestEcho)}
	sizeLabel := func(r Row) string { return strconv.FormatFloat(r.Value, 'f', 0, 64) }
	var out []figure
	if hasRows(gp, false) {
		out = append(out, figure{goodputSVG, "TCP goodput per path, both directions", func() (*plot.Plot, error) {
			return barPlot("TCP goodput, one stream: median, range of streams, ratio to native", "Gbit/s", paths, gp, 0, ratioLabel)
		}})
	}
	if hasRows(conn, true) {
		out = append(out, figure{connectSVG, "TCP connect time per path", func() (*plot.Plot, error) {
			return boxPlot("TCP connect time, each connect a new flow", "ms", paths, conn, true)
		}})
	}
	if hasRows(rtt, true) {
		out = append(out, figure{rttSVG, "UDP round trip per path", func() (*plot.Plot, error) {
			return boxPlot("UDP round trip on one established flow", "ms", paths, rtt, true)
		}})
	}
	if hasRows(mtu, false) {
		out = append(out, figure{mtuSVG, "Largest IPv6 packet per path", func() (*plot.Plot, error) {
			return barPlot("Largest IPv6 packet through the path (offloads "+string(m)+")", "bytes", paths, mtu, 1200, sizeLabel)
		}})
	}
	return out
}

// hasRows reports whether any group has a row, with samples if asked.
func hasRows(gs []group, samples bool) bool {
	for _, g := range gs {
		for _, r := range g.rows {
			if !samples || len(r.Samples) > 0 {
				return true
			}
		}
	}
	return false
}

func labPlots(dir string, rep *Report) error {
	for _, f := range labFigures(rep) {
		p, err := f.draw()
		if err != nil {
			return fmt.Errorf("%s: %w", f.file, err)
		}
		if err := saveSVG(p, plotWidth, plotHeight, dir, f.file); err != nil {
			return err
		}
	}
	return nil
}

// modeLabel names an offload mode briefly, for a plot's axis.
func modeLabel(m Offloads) string {
	if m == Off {
		return "offloads off"
	}
	return "offloads " + string(m)
}

// ratio formats a ratio to the baseline.
func ratio(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) + "x" }

// Markdown is the report's page.
func Markdown(lab *LabResults, x *XDPResults, cg *CGNATResults) string {
	var b strings.Builder
	b.WriteString("# unmap benchmark report\n\n")
	var files, flags []string
	for _, f := range []struct {
		there      bool
		name, flag string
	}{{lab != nil, LabJSON, "--lab"}, {x != nil, XDPJSON, "--xdp"}, {cg != nil, CGNATJSON, "--cgnat"}} {
		if f.there {
			files = append(files, "["+f.name+"]("+f.name+")")
			flags = append(flags, f.flag+" docs/bench/"+f.name)
		}
	}
	b.WriteString("Made by `unmap bench report` from the results beside this page (" + strings.Join(files, ", ") + ")")
	b.WriteString(". Every figure is compared with a baseline measured in the same run " +
		"(the native IPv6 path for the lab, the empty XDP program for the datapath, the kernel's NAT for the CGNAT): " +
		"the machine below is shared with other work, so compare ratios, not absolute " +
		"figures across runs. Where a figure was measured more than once, the page " +
		"and the plots show the spread.\n\n")
	b.WriteString("Make it again from these results, or measure anew (root):\n\n")
	b.WriteString("    unmap bench report --out docs/bench " + strings.Join(flags, " ") + "\n")
	b.WriteString("    sudo unmap bench report --out docs/bench\n\n")
	if lab != nil {
		writeLab(&b, lab)
	}
	if x != nil {
		writeXDP(&b, x)
	}
	if cg != nil {
		writeCGNAT(&b, cg)
	}
	return b.String()
}

func writeMachine(b *strings.Builder, m Machine) {
	fmt.Fprintf(b, "Measured %s on %s (%d CPUs), Linux %s; unmap commit `%s`, %s.\n\n",
		m.Date.UTC().Format("2006-01-02 15:04 UTC"), m.CPU, m.Cores, m.Kernel, m.Commit, m.Go)
}

// headline names, for a summary, the figures an operator asks first.
var headline = []Metric{Goodput, GoodputDown, LargestUp, LargestDown, ConnectMedian, RTTMedian, FirstPacketLoss}

func writeLab(b *strings.Builder, lab *LabResults) {
	rep := lab.Report()
	paths, modes := pathsOf(rep), modesOf(rep)
	b.WriteString("## End to end in the lab (`unmap bench lab`)\n\n")
	writeMachine(b, lab.Machine)
	c := lab.Config.withDefaults()
	fmt.Fprintf(b, "From the site's lan host to the IPv6-only server srv6, each path in a lab of its own "+
		"(`unmap bench lab --help` says how each figure is taken): %d goodput streams of %v per path, "+
		"direction and mode, the paths taking turns; %d TCP connects; %d UDP round trips; %d new UDP flows "+
		"for first-packet loss.\n\n", c.Rounds, c.Goodput, c.Connects, c.Pings, c.Flows)
	if len(modes) > 0 {
		fmt.Fprintf(b, "Headline (offloads %s):\n\n", modes[0])
		for _, m := range headline {
			var cells []string
			for _, p := range paths {
				row, ok := rep.Find(p, modes[0], m)
				if !ok {
					continue
				}
				cell := p + " " + value(row)
				if row.Ratio != 0 && p != Native {
					cell += " (" + ratio(row.Ratio) + ")"
				}
				cells = append(cells, cell)
			}
			if len(cells) > 0 {
				fmt.Fprintf(b, "- %s: %s\n", m, strings.Join(cells, "; "))
			}
		}
		b.WriteString("\n")
	}
	for _, f := range labFigures(rep) {
		b.WriteString("![" + f.alt + "](" + f.file + ")\n\n")
	}
	for _, mode := range modes {
		fmt.Fprintf(b, "### Offloads %s\n\n", mode)
		b.WriteString("| metric |")
		sep := "|---|"
		for _, p := range paths {
			if p == Native {
				b.WriteString(" " + p + " |")
				sep += "---:|"
				continue
			}
			b.WriteString(" " + p + " | " + p + " vs native |")
			sep += "---:|---:|"
		}
		b.WriteString("\n" + sep + "\n")
		for _, m := range Metrics {
			var line strings.Builder
			found := false
			line.WriteString("| " + string(m) + " |")
			for _, p := range paths {
				row, ok := rep.Find(p, mode, m)
				cell, rc := "-", "-"
				if ok {
					found = true
					cell = value(row)
					if len(row.Samples) > 1 && (m == Goodput || m == GoodputDown) {
						cell += fmt.Sprintf(" (%s–%s)", strconv.FormatFloat(slices.Min(row.Samples), 'f', 2, 64), strconv.FormatFloat(slices.Max(row.Samples), 'f', 2, 64))
					}
					if row.Ratio != 0 {
						rc = ratio(row.Ratio)
					}
				}
				line.WriteString(" " + cell + " |")
				if p != Native {
					line.WriteString(" " + rc + " |")
				}
			}
			if found {
				b.WriteString(line.String() + "\n")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("Goodput cells are the median stream with the slowest and fastest in brackets. " +
		"Connect and round-trip times: median and 99th percentile of every sample; the plots show their distribution.\n\n")
}

func writeXDP(b *strings.Builder, x *XDPResults) {
	b.WriteString("## The XDP datapath (`unmap bench xdp`)\n\n")
	writeMachine(b, x.Machine)
	rounds := 0
	if len(x.Paths) > 0 {
		rounds = len(x.Paths[0].RoundNs)
	}
	fmt.Fprintf(b, "Each path's packet run through the loaded datapath with BPF_PROG_RUN (no interface, no traffic), "+
		"%d runs per path in %d rounds, the paths taking turns; a path's figure is the median of its round means, "+
		"the spread their range. The baseline is the first row, an empty XDP_PASS program.\n\n", x.Repeats, rounds)
	b.WriteString("![XDP cost per packet and path](" + xdpSVG + ")\n\n")
	b.WriteString("| path | ns/pkt | rounds (min–max) | over baseline | vs baseline | verdict | runs | note |\n")
	b.WriteString("|---|---:|---:|---:|---:|---|---:|---|\n")
	base := x.Paths[0].Ns
	for i, p := range x.Paths {
		spread := "-"
		if len(p.RoundNs) > 0 {
			spread = fmt.Sprintf("%.0f–%.0f", slices.Min(p.RoundNs), slices.Max(p.RoundNs))
		}
		over, rc := "-", "-"
		if i > 0 {
			over = fmt.Sprintf("%+.0f ns", p.Ns-base)
			rc = ratio(p.Ns / base)
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s | %s | %d | %s |\n", p.Path, p.Ns, spread, over, rc, p.Verdict, p.Runs, p.Note)
	}
	b.WriteString("\n")
}
