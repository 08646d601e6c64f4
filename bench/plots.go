package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The report's plots, drawn with gonum.org/v1/plot as SVG. Each shows
// spread where the run has it: goodput bars are the median stream with
// the slowest and fastest as the error bar, latencies are box plots of
// every connect or round trip, the XDP paths box plots of their round
// means. Ratios to the baseline are written on the bars that have one.

// pathColor gives each path the same colour in every plot.
func pathColor(paths []string, p string) color.Color {
	return plotutil.Color(slices.Index(paths, p))
}

// group is one cluster of bars: a label under it and, per path, the row
// it shows.
type group struct {
	label string
	rows  map[string]Row
}

// barPlot draws grouped bars, one per path in each group: the row's
// value, its samples' range as an error bar, and above it the label
// text gives (the ratio to the baseline).
func barPlot(title, ylabel string, paths []string, groups []group, ymin float64, label func(Row) string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.label
	}
	p.NominalX(names...)
	const slot = 0.8 // of a group's width, shared by its bars
	w := slot / float64(len(paths))
	var lxy plotter.XYs
	var ltext []string
	for i, path := range paths {
		vals := make(plotter.Values, len(groups))
		var errs struct {
			plotter.XYs
			plotter.YErrors
		}
		for j, g := range groups {
			row, ok := g.rows[path]
			if !ok {
				continue
			}
			vals[j] = row.Value
			x := float64(j) - slot/2 + w*(float64(i)+0.5)
			if len(row.Samples) > 1 {
				lo, hi := slices.Min(row.Samples), slices.Max(row.Samples)
				errs.XYs = append(errs.XYs, plotter.XY{X: x, Y: row.Value})
				errs.YErrors = append(errs.YErrors, struct{ Low, High float64 }{row.Value - lo, hi - row.Value})
			}
			if t := label(row); t != "" {
				top := row.Value
				if len(row.Samples) > 1 {
					top = slices.Max(row.Samples)
				}
				lxy = append(lxy, plotter.XY{X: x, Y: top})
				ltext = append(ltext, t)
			}
		}
		bars, err := plotter.NewBarChart(vals, vg.Points(1)) // width set below, in data units
		if err != nil {
			return nil, err
		}
		bars.XMin = -slot/2 + w*(float64(i)+0.5)
		bars.Color = pathColor(paths, path)
		bars.LineStyle.Width = 0
		bars.Width = barWidth(len(groups), len(paths))
		p.Add(bars)
		p.Legend.Add(path, bars)
		if len(errs.XYs) > 0 {
			eb, err := plotter.NewYErrorBars(errs)
			if err != nil {
				return nil, err
			}
			p.Add(eb)
		}
	}
	if len(lxy) > 0 {
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: lxy, Labels: ltext})
		if err != nil {
			return nil, err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].XAlign = -0.5 // centred on the bar
			l.TextStyle[i].YAlign = 0    // above the bar's top
			l.TextStyle[i].Font.Size = vg.Points(7)
		}
		p.Add(l)
	}
	p.Y.Min = ymin
	p.Y.Max = ymin + (p.Y.Max-ymin)*1.35 // room for the labels and the legend
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	return p, nil
}

// plotWidth is the width of every bar plot; barWidth the bar that fills
// its share of it (gonum sizes bars in points, not data units).
const plotWidth = 7 * vg.Inch

func barWidth(groups, paths int) vg.Length {
	// About 85% of the plot area is data; each group gets 1/groups of
	// it, its bars 0.8 of that, each bar 1/paths of those.
	area := plotWidth * 0.85
	return vg.Length(float64(area) / float64(groups) * 0.8 / float64(paths) * 0.9)
}

// boxPlot draws a box per path in each group, of the samples of the row
// the group gives.
func boxPlot(title, ylabel string, paths []string, groups []group, logY bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.label
	}
	p.NominalX(names...)
	const slot = 0.8
	w := slot / float64(len(paths))
	for i, path := range paths {
		added := false
		for j, g := range groups {
			row, ok := g.rows[path]
			if !ok || len(row.Samples) == 0 {
				continue
			}
			x := float64(j) - slot/2 + w*(float64(i)+0.5)
			b, err := plotter.NewBoxPlot(barWidth(len(groups), len(paths)), x, plotter.Values(row.Samples))
			if err != nil {
				return nil, err
			}
			b.FillColor = pathColor(paths, path)
			b.GlyphStyle.Radius = vg.Points(1.5)
			p.Add(b)
			if !added {
				p.Legend.Add(path, &plotter.BarChart{Color: b.FillColor}) // a box has no legend thumbnail
				added = true
			}
		}
	}
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	if logY && positive(groups) {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Max *= 4   // room for the legend, a decade and more on a log axis
		p.Y.Min /= 1.5 // the lowest whisker off the axis
		p.Y.Label.Text += " (log scale)"
	} else {
		p.Y.Max *= 1.3
	}
	return p, nil
}

// positive reports whether every sample of the groups is above 0, as a
// log axis needs.
func positive(groups []group) bool {
	for _, g := range groups {
		for _, r := range g.rows {
			for _, v := range r.Samples {
				if v <= 0 {
					return false
				}
			}
		}
	}
	return true
}

// xdpPlot draws a horizontal box per XDP path of its round means, the
// baseline first (at the top). Each path is named above its box, inside
// the plot, rather than as a tick label beside the axis: a viewer's
// substitute font then runs into empty space, not into the boxes.
func xdpPlot(x *XDPResults) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "XDP datapath: ns per packet, box of the round means"
	p.X.Label.Text = "ns per packet"
	n := len(x.Paths)
	var lxy plotter.XYs
	var ltext []string
	for i, path := range x.Paths {
		loc := float64(n - 1 - i) // gonum counts up from the bottom
		vals := path.RoundNs
		if len(vals) == 0 {
			vals = []float64{path.Ns}
		}
		b, err := plotter.NewBoxPlot(vg.Points(9), loc, plotter.Values(vals))
		if err != nil {
			return nil, err
		}
		b.Horizontal = true
		b.FillColor = plotutil.Color(0)
		if i == 0 {
			b.FillColor = plotutil.Color(1)
		}
		b.GlyphStyle.Radius = vg.Points(1.5)
		p.Add(b)
		lxy = append(lxy, plotter.XY{X: 0, Y: loc + 0.3})
		ltext = append(ltext, fmt.Sprintf("%s: %.0f ns, %s", path.Path, path.Ns, ratio(path.Ns/x.Paths[0].Ns)))
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: lxy, Labels: ltext})
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = vg.Points(8)
	}
	p.Add(l)
	p.HideY()
	p.X.Min = 0
	p.Y.Min, p.Y.Max = -0.5, float64(n)-0.2
	return p, nil
}

// svgMargin is left around each plot: gonum lays text out with the
// metrics of its own fonts (Liberation), which the SVG only names, so a
// viewer that substitutes a wider font would otherwise cut labels at the
// edges. Embedding the fonts instead would add about 400 kB a plot.
const svgMargin = 0.3 * vg.Inch

// saveSVG writes p as dir/name, w by h with the margin inside.
func saveSVG(p *plot.Plot, w, h vg.Length, dir, name string) error {
	c := vgsvg.New(w, h)
	p.Draw(draw.Crop(draw.New(c), svgMargin, -svgMargin, svgMargin/2, -svgMargin/2))
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	return f.Close()
}
