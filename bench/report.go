package bench

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// Metric names one figure, with its unit.
type Metric string

const (
	Goodput         Metric = "tcp goodput up (Gbit/s)"
	GoodputDown     Metric = "tcp goodput down (Gbit/s)"
	LargestUp       Metric = "largest IPv6 packet up (bytes)"
	LargestDown     Metric = "largest IPv6 packet down (bytes)"
	LargestEcho     Metric = "largest ICMPv6 echo, both ways (bytes)"
	ConnectMedian   Metric = "tcp connect median (ms)"
	ConnectP99      Metric = "tcp connect p99 (ms)"
	RTTMedian       Metric = "udp rtt median (ms)"
	RTTP99          Metric = "udp rtt p99 (ms)"
	FirstPacketLoss Metric = "first-packet loss (flows)"
)

// Metrics lists every figure a path gets in each offload mode.
var Metrics = []Metric{FirstPacketLoss, LargestUp, LargestDown, LargestEcho, ConnectMedian, ConnectP99, RTTMedian, RTTP99, Goodput, GoodputDown}

// Row is one measured figure.
type Row struct {
	Path     string   `json:"path"`
	Offloads Offloads `json:"offloads"`
	Metric   Metric   `json:"metric"`
	Value    float64  `json:"value"`
	// Ratio is Value over the native path's value for the same metric
	// and offload mode; 0 when there is none (no native row, a native
	// value of 0, or a count like first-packet loss).
	Ratio float64 `json:"ratio,omitempty"`
	// Of is the number of tries a count is out of (first-packet loss).
	Of int `json:"of,omitempty"`
	// Samples are the measurements Value is the median or quantile of,
	// in the order taken, in Value's unit: each goodput stream, each
	// connect or round trip (on the median's row only; the p99 row has
	// the same ones). A report shows their spread.
	Samples []float64 `json:"samples,omitempty"`
}

// Report is the result of a run.
type Report struct {
	Config Config
	Rows   []Row
}

// ratios fills each row's Ratio from the native rows.
func (r *Report) ratios() {
	native := map[[2]string]float64{}
	for _, row := range r.Rows {
		if row.Path == Native {
			native[[2]string{string(row.Offloads), string(row.Metric)}] = row.Value
		}
	}
	for i, row := range r.Rows {
		base := native[[2]string{string(row.Offloads), string(row.Metric)}]
		if row.Metric == FirstPacketLoss || base == 0 {
			continue
		}
		r.Rows[i].Ratio = row.Value / base
	}
}

// Find returns the row of one figure.
func (r *Report) Find(path string, mode Offloads, m Metric) (Row, bool) {
	for _, row := range r.Rows {
		if row.Path == path && row.Offloads == mode && row.Metric == m {
			return row, true
		}
	}
	return Row{}, false
}

// WriteTable prints the rows: path, offloads, metric, value, ratio to
// native.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\toffloads\tmetric\tvalue\tvs native")
	for _, row := range r.Rows {
		ratio := "-"
		if row.Ratio != 0 {
			ratio = strconv.FormatFloat(row.Ratio, 'f', 2, 64) + "x"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", row.Path, row.Offloads, row.Metric, value(row), ratio)
	}
	return tw.Flush()
}

func value(row Row) string {
	switch row.Metric {
	case FirstPacketLoss:
		return fmt.Sprintf("%.0f of %d", row.Value, row.Of)
	case LargestUp, LargestDown, LargestEcho:
		return strconv.FormatFloat(row.Value, 'f', 0, 64)
	case ConnectMedian, ConnectP99, RTTMedian, RTTP99:
		return strconv.FormatFloat(row.Value, 'f', 3, 64)
	}
	return strconv.FormatFloat(row.Value, 'f', 2, 64)
}
