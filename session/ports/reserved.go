package ports

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// maxReservedText bounds what ParseReserved reads: the kernel's own list
// of 65535 single ports is under 400 KB; anything longer is not it.
const maxReservedText = 512 << 10

// ParseReserved parses the kernel's ip_local_reserved_ports list, such
// as "8080,61000-64999" (empty means none), into sorted, merged ranges.
func ParseReserved(s string) ([]Range, error) {
	if len(s) > maxReservedText {
		return nil, fmt.Errorf("reserved ports list longer than %d bytes", maxReservedText)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []Range
	for item := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(item), "-")
		if !isRange {
			hi = lo
		}
		first, err1 := strconv.ParseUint(lo, 10, 16)
		last, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || first > last {
			return nil, fmt.Errorf("reserved ports: %q is not a port or range", clip(item))
		}
		// The kernel ignores port 0 in this list; so do we.
		if first == 0 {
			if last == 0 {
				continue
			}
			first = 1
		}
		out = append(out, Range{uint16(first), uint16(last)})
	}
	return merge(out), nil
}

// FormatReserved writes ranges the way the kernel reads them.
func FormatReserved(rs []Range) string {
	parts := make([]string, 0, len(rs))
	for _, r := range merge(rs) {
		parts = append(parts, r.String())
	}
	return strings.Join(parts, ",")
}

// WithReserved returns the list s with r added, for writing back.
func WithReserved(s string, r Range) (string, error) {
	rs, err := ParseReserved(s)
	if err != nil {
		return "", err
	}
	return FormatReserved(append(rs, r)), nil
}

// merge sorts rs and joins ranges that overlap or touch.
func merge(rs []Range) []Range {
	rs = append([]Range(nil), rs...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].First < rs[j].First })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && int(r.First) <= int(out[n-1].Last)+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Covered reports whether every port of r is in the reserved ranges rs.
func Covered(rs []Range, r Range) bool {
	for _, x := range merge(rs) {
		if x.First <= r.First && r.Last <= x.Last {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
