package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/bench/xdpbench"
)

// Saved results: what `unmap bench lab --json` and `unmap bench xdp
// --json` write, and what `unmap bench report` makes its page and plots
// from. Each names the machine, kernel, commit and date it was measured
// on, so a figure in the docs can be traced to a run.

// Machine says where and when figures were measured.
type Machine struct {
	CPU    string    `json:"cpu"`    // model name from /proc/cpuinfo
	Cores  int       `json:"cores"`  // CPUs this process could use
	Kernel string    `json:"kernel"` // uname release and version
	Commit string    `json:"commit"` // the unmap commit measured
	Go     string    `json:"go"`
	Date   time.Time `json:"date"`
}

// ThisMachine describes the machine now. The commit is the one Go
// stamped into the binary or, when it stamped none (a worktree, or
// -buildvcs=false), what git says of the current directory; "unknown"
// without either.
func ThisMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Truncate(time.Second)}
	m.CPU = cpuModel()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
	}
	m.Commit = commit()
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func commit() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		var rev string
		dirty := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// LabResults is one `unmap bench lab` run.
type LabResults struct {
	Machine Machine `json:"machine"`
	Config  Config  `json:"config"`
	Rows    []Row   `json:"rows"`
}

// LabResultsOf is the saved form of a run's report.
func LabResultsOf(m Machine, rep *Report) *LabResults {
	return &LabResults{Machine: m, Config: rep.Config, Rows: rep.Rows}
}

// Report is the results as a Report, ratios recomputed from the values
// (a file edited by hand cannot carry ratios that disagree with them).
func (r *LabResults) Report() *Report {
	rep := &Report{Config: r.Config, Rows: append([]Row(nil), r.Rows...)}
	for i := range rep.Rows {
		rep.Rows[i].Ratio = 0
	}
	rep.ratios()
	return rep
}

// XDPPath is one datapath path's cost, in nanoseconds per packet.
type XDPPath struct {
	Path    string            `json:"path"`
	Note    string            `json:"note,omitempty"`
	Runs    int               `json:"runs"`
	Ns      float64           `json:"ns_per_pkt"` // median of RoundNs
	RoundNs []float64         `json:"round_ns"`   // each round's mean per run, in the order run
	Verdict string            `json:"verdict"`
	Reasons map[string]uint64 `json:"reasons,omitempty"`
}

// XDPResults is one `unmap bench xdp` run. The first path is the
// baseline, the empty XDP program measured in the same run.
type XDPResults struct {
	Machine Machine   `json:"machine"`
	Repeats int       `json:"repeats"` // runs asked for per path
	Paths   []XDPPath `json:"paths"`
}

// XDPResultsOf is the saved form of bench.XDP's results.
func XDPResultsOf(m Machine, repeats int, res []xdpbench.Result) *XDPResults {
	out := &XDPResults{Machine: m, Repeats: repeats}
	for _, r := range res {
		p := XDPPath{Path: r.Path, Note: r.Note, Runs: r.Repeats, Ns: float64(r.PerPkt.Nanoseconds()), Verdict: r.Verdict.String()}
		for _, d := range r.Rounds {
			p.RoundNs = append(p.RoundNs, float64(d.Nanoseconds()))
		}
		for reason, n := range r.Reasons {
			if p.Reasons == nil {
				p.Reasons = map[string]uint64{}
			}
			p.Reasons[reason.String()] = n
		}
		out.Paths = append(out.Paths, p)
	}
	return out
}

// WriteJSON writes v indented to the file path.
func WriteJSON(path string, v any) error { return WriteJSONTo(nil, path, v) }

// WriteJSONTo writes v indented to the file path, or to stdout when path
// is "-".
func WriteJSONTo(stdout io.Writer, path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" && stdout != nil {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// maxResults bounds a results file: a full run is tens of kilobytes.
const maxResults = 16 << 20

// ReadLabResults reads a file `unmap bench lab --json` wrote.
func ReadLabResults(path string) (*LabResults, error) {
	var r LabResults
	if err := readJSON(path, &r); err != nil {
		return nil, err
	}
	if len(r.Rows) == 0 {
		return nil, fmt.Errorf("%s: no rows", path)
	}
	for i, row := range r.Rows {
		if row.Path == "" || row.Metric == "" {
			return nil, fmt.Errorf("%s: rows[%d]: no path or metric", path, i)
		}
	}
	return &r, nil
}

// ReadXDPResults reads a file `unmap bench xdp --json` wrote.
func ReadXDPResults(path string) (*XDPResults, error) {
	var r XDPResults
	if err := readJSON(path, &r); err != nil {
		return nil, err
	}
	if len(r.Paths) == 0 {
		return nil, fmt.Errorf("%s: no paths", path)
	}
	if r.Paths[0].Ns <= 0 {
		return nil, fmt.Errorf("%s: the baseline (paths[0], %q) has no cost to compare with", path, r.Paths[0].Path)
	}
	return &r, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) > maxResults {
		return fmt.Errorf("%s: %d bytes, more than a results file holds (%d)", path, len(b), maxResults)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
