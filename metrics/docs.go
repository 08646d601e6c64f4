package metrics

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// docRow is a row of OPERATING.md's metrics table: | `name` | type | labels: values | help |
var docRow = regexp.MustCompile("(?m)^\\| `(unmap_[a-z0-9_]+)` \\| [a-z]+ \\| ([^|]*) \\|")

// DocTable parses OPERATING.md's metrics table: each metric's labels
// cell by its name.
func DocTable(md string) map[string]string {
	out := map[string]string{}
	for _, m := range docRow.FindAllStringSubmatch(md, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// CheckDocs compares the documented metrics with the registered ones:
// every name registered is documented, every documented name under one
// of prefixes is registered, and every label value of a declared family
// is in its row (`value`), unless the row says the values are every code
// of SPEC. It returns what disagrees.
func CheckDocs(doc map[string]string, prefixes, names []string, fams []*Family) []string {
	var bad []string
	for _, n := range names {
		if _, ok := doc[n]; !ok {
			bad = append(bad, fmt.Sprintf("%s is registered but not in OPERATING.md's metrics table", n))
		}
	}
	for n := range doc {
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) && !slices.Contains(names, n) {
				bad = append(bad, fmt.Sprintf("%s is in OPERATING.md's metrics table but registered by nothing", n))
			}
		}
	}
	for _, f := range fams {
		row, ok := doc[f.Name]
		if !ok || strings.Contains(row, "every code of SPEC") {
			continue
		}
		for _, v := range f.LabelValues() {
			if !strings.Contains(row, "`"+v+"`") {
				bad = append(bad, fmt.Sprintf("%s{%s=%q} is not in OPERATING.md's row", f.Name, f.Label, v))
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// dashExpr finds the metric names a Grafana dashboard's queries use.
var dashExpr = regexp.MustCompile(`\bunmap_[a-z0-9_]+`)

// DashboardNames are the metrics a dashboard (its JSON) queries, the
// suffixes of a histogram's series (_bucket, _count, _sum) taken off.
func DashboardNames(dashboard string) []string {
	var out []string
	for _, n := range dashExpr.FindAllString(dashboard, -1) {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if strings.HasSuffix(n, "_seconds"+suffix) {
				n = strings.TrimSuffix(n, suffix)
			}
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// CheckDashboard returns the metrics under prefixes that dashboard
// queries and names do not have.
func CheckDashboard(dashboard string, prefixes, names []string) []string {
	var bad []string
	for _, n := range DashboardNames(dashboard) {
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) && !slices.Contains(names, n) {
				bad = append(bad, fmt.Sprintf("the dashboard queries %s, which nothing registers", n))
			}
		}
	}
	return bad
}
