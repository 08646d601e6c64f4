// Package deps holds the module's import rules (issue 11) and checks
// them against the import graph `go list -deps` reports: which layer may
// import which, and what the agents may never link. Its test runs in
// `go test ./...`, so a change that breaks a rule fails CI naming the
// importer and the import.
package deps

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Module is the module path; rule patterns are relative to it.
const Module = "github.com/unmap-dev/unmap"

// A Rule constrains the non-test imports of the packages From matches.
// Patterns are module-relative ("edge", "session/..." for session and
// below) or, with a dot-free first element and Std set, standard library
// paths ("testing").
type Rule struct {
	Name string   // says why, printed with each violation
	From []string // the packages the rule is about
	// Forbid lists what they must not import directly.
	Forbid []string
	// Only, if set, lists all of the module's packages they may import
	// directly (outside packages are not limited by it).
	Only []string
	// NeverLink lists what must not be anywhere in their dependencies,
	// module or not ("testing" is the standard library's).
	NeverLink []string
	// Except lists importers From matches that the rule leaves alone.
	Except []string
}

// Package is a node of the import graph: its path and its direct,
// non-test imports.
type Package struct {
	ImportPath string
	Imports    []string
}

// Rules are the module's import rules.
var Rules = []Rule{
	{
		Name: "session/* is the words of flows: below control, xdp, the agents and their config",
		From: []string{"session/..."}, Except: []string{"session/xlat/xlattest"},
		Only: []string{"session/..."},
	},
	{
		Name: "config is shared by both agents: it imports no control package, only session/*",
		From: []string{"config/..."}, Only: []string{"session/..."},
	},
	{
		Name: "proto is below control",
		From: []string{"proto/..."}, Only: []string{"session/..."},
	},
	{
		Name: "xdp is below edge, relay and control",
		From: []string{"xdp/..."},
		Forbid: []string{"edge/...", "relay/...", "control/...", "proto/...", "status/...",
			"config/...", "lab/...", "bench/...", "cmd/..."},
	},
	{
		Name:   "the edge and the relay never import each other",
		From:   []string{"edge/..."},
		Forbid: []string{"relay/..."},
	},
	{
		Name:   "the edge and the relay never import each other",
		From:   []string{"relay/..."},
		Forbid: []string{"edge/..."},
	},
	{
		Name:   "control is the channel: below the agents and their status socket",
		From:   []string{"control/..."},
		Forbid: []string{"edge/...", "relay/...", "status/...", "lab/...", "bench/...", "cmd/..."},
	},
	{
		Name:   "the status socket serves the agents: below them and the control channel",
		From:   []string{"status/...", "ratelimit/..."},
		Forbid: []string{"edge/...", "relay/...", "control/...", "lab/...", "bench/...", "cmd/..."},
	},
	{
		Name: "test helpers are for tests: nothing outside test/ imports them",
		From: []string{"..."}, Except: []string{"test/..."},
		Forbid: []string{"test/..."},
	},
	{
		Name: "xlattest (gopacket fixtures) is for tests and the bench only",
		From: []string{"..."}, Except: []string{"test/...", "bench/...", "session/xlat/xlattest", "session/cgnat/cgnattest"},
		Forbid: []string{"session/xlat/xlattest"},
	},
	{
		Name: "cgnattest (the CGNAT's fixtures, built on xlattest) is for tests and the bench only",
		From: []string{"..."}, Except: []string{"test/...", "bench/...", "session/cgnat/cgnattest"},
		Forbid: []string{"session/cgnat/cgnattest"},
	},
	{
		Name:      "the agents link no lab, bench, fixtures, test helpers or testing",
		From:      []string{"edge", "relay"},
		NeverLink: []string{"lab/...", "bench/...", "session/xlat/xlattest", "session/cgnat/cgnattest", "test/...", "std:testing"},
	},
}

// match reports whether path (a full import path) matches pattern.
// "std:x" matches the standard library path x and its subpackages;
// anything else is module-relative, "..." alone meaning the whole module.
func match(pattern, path string) bool {
	if p, ok := strings.CutPrefix(pattern, "std:"); ok {
		return path == p || strings.HasPrefix(path, p+"/")
	}
	if pattern == "..." {
		return path == Module || strings.HasPrefix(path, Module+"/")
	}
	full := Module + "/" + strings.TrimSuffix(pattern, "/...")
	if strings.HasSuffix(pattern, "/...") {
		return path == full || strings.HasPrefix(path, full+"/")
	}
	return path == full
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, path) })
}

func ours(path string) bool { return match("...", path) }

// Violations checks graph (every package with its direct imports: the
// module's and, for NeverLink, everything they depend on) against rules
// and returns one line per broken rule and import, sorted:
// "importer imports import: rule" or, for NeverLink, "root links import
// (imported by importer): rule".
func Violations(graph []Package, rules []Rule) []string {
	byPath := map[string]Package{}
	for _, p := range graph {
		byPath[p.ImportPath] = p
	}
	var out []string
	short := func(p string) string { return strings.TrimPrefix(p, Module+"/") }
	for _, r := range rules {
		for _, p := range graph {
			if !ours(p.ImportPath) || !matchAny(r.From, p.ImportPath) || matchAny(r.Except, p.ImportPath) {
				continue
			}
			for _, imp := range p.Imports {
				if imp == p.ImportPath {
					continue
				}
				bad := matchAny(r.Forbid, imp) || r.Only != nil && ours(imp) && !matchAny(r.Only, imp)
				if bad {
					out = append(out, fmt.Sprintf("%s imports %s: %s", short(p.ImportPath), short(imp), r.Name))
				}
			}
			if len(r.NeverLink) == 0 {
				continue
			}
			// Walk the dependencies; name the package that brings each
			// forbidden one in.
			seen := map[string]bool{p.ImportPath: true}
			queue := []string{p.ImportPath}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				for _, imp := range byPath[cur].Imports {
					if matchAny(r.NeverLink, imp) {
						out = append(out, fmt.Sprintf("%s links %s (imported by %s): %s", short(p.ImportPath), short(imp), short(cur), r.Name))
						continue
					}
					if !seen[imp] {
						seen[imp] = true
						queue = append(queue, imp)
					}
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
