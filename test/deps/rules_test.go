package deps

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// graph builds a synthetic import graph: "a -> b c" lines, module-relative
// unless the path is "std:x" (the standard library's x).
func graph(lines ...string) []Package {
	full := func(p string) string {
		if s, ok := strings.CutPrefix(p, "std:"); ok {
			return s
		}
		return Module + "/" + p
	}
	var g []Package
	for _, l := range lines {
		from, to, _ := strings.Cut(l, "->")
		p := Package{ImportPath: full(strings.TrimSpace(from))}
		for _, imp := range strings.Fields(to) {
			p.Imports = append(p.Imports, full(imp))
		}
		g = append(g, p)
	}
	return g
}

// The rules catch each kind of violation, naming importer and import, and
// pass a graph shaped like the module's.
func TestRulesCatchViolations(t *testing.T) {
	clean := []string{
		"cmd/unmap -> edge relay lab bench config status",
		"edge -> control control/pki proto session session/flows config status ratelimit xdp xdp/ifcheck",
		"relay -> control proto session config status xdp",
		"control -> control/pki proto session",
		"control/pki -> session",
		"proto -> session",
		"config -> session/ports",
		"session/ports -> session",
		"session/xlat/xlattest -> session/xlat",
		"xdp -> session session/xlat",
		"lab -> xdp status",
		"bench -> lab xdp bench/xdpbench",
		"bench/xdpbench -> session/xlat/xlattest",
		"test/labtest -> lab test/priv",
		"status ->", "ratelimit ->", "session ->", "session/xlat ->", "session/flows -> session",
		"xdp/ifcheck ->", "test/priv ->",
	}
	if v := Violations(graph(clean...), Rules); len(v) != 0 {
		t.Fatalf("a clean graph breaks rules:\n%s", strings.Join(v, "\n"))
	}
	for _, tc := range []struct {
		name  string
		extra []string // lines appended to the clean graph (a later line for a package replaces nothing: it adds imports)
		want  string
	}{
		{"session imports control", []string{"session/flows -> control"}, "session/flows imports control: session/*"},
		{"session imports config", []string{"session/ports -> config"}, "session/ports imports config: session/*"},
		{"config imports control/pki", []string{"config -> control/pki"}, "config imports control/pki: config"},
		{"proto imports control", []string{"proto -> control"}, "proto imports control: proto is below control"},
		{"xdp imports edge", []string{"xdp -> edge"}, "xdp imports edge: xdp is below"},
		{"xdp imports control", []string{"xdp/ifcheck -> control"}, "xdp/ifcheck imports control: xdp is below"},
		{"edge imports relay", []string{"edge -> relay"}, "edge imports relay: the edge and the relay"},
		{"relay imports edge", []string{"relay -> edge"}, "relay imports edge: the edge and the relay"},
		{"control imports status", []string{"control -> status"}, "control imports status: control is the channel"},
		{"control imports edge", []string{"control/pki -> edge"}, "control/pki imports edge: control is the channel"},
		{"lab imports test/priv", []string{"lab -> test/priv"}, "lab imports test/priv: test helpers are for tests"},
		{"xdp imports xlattest", []string{"xdp -> session/xlat/xlattest"}, "xdp imports session/xlat/xlattest: xlattest"},
		{"relay links the lab", []string{"relay -> lab"}, "relay links lab (imported by relay): the agents link"},
		{"edge links xlattest through xdp", []string{"xdp -> session/xlat/xlattest"}, "edge links session/xlat/xlattest (imported by xdp): the agents link"},
		{"relay links the bench through xdp", []string{"xdp -> bench/xdpbench"}, "relay links bench/xdpbench (imported by xdp): the agents link"},
		{"edge links testing through status", []string{"status -> std:testing"}, "edge links std:testing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Merge the extra imports into the clean graph's packages.
			g := graph(clean...)
			for _, e := range graph(tc.extra...) {
				i := slices.IndexFunc(g, func(p Package) bool { return p.ImportPath == e.ImportPath })
				if i < 0 {
					g = append(g, e)
					continue
				}
				g[i].Imports = append(slices.Clone(g[i].Imports), e.Imports...)
			}
			v := Violations(g, Rules)
			want := strings.ReplaceAll(tc.want, "std:", "")
			if !slices.ContainsFunc(v, func(s string) bool { return strings.HasPrefix(s, want) }) {
				t.Fatalf("no violation starting %q; got:\n%s", want, strings.Join(v, "\n"))
			}
		})
	}
}

// TestModuleFollowsRules checks the module's real import graph (non-test
// imports, as `go list -deps` reports them) against Rules, and that
// every rule is about packages that exist, so a rename cannot make a
// rule pass by matching nothing.
func TestModuleFollowsRules(t *testing.T) {
	g := moduleGraph(t)
	if v := Violations(g, Rules); len(v) != 0 {
		t.Fatalf("import rules broken (test/deps/rules.go says why):\n%s", strings.Join(v, "\n"))
	}
	for _, r := range Rules {
		for _, from := range r.From {
			if !slices.ContainsFunc(g, func(p Package) bool { return match(from, p.ImportPath) }) {
				t.Errorf("rule %q: no package matches %q", r.Name, from)
			}
		}
	}
}

func moduleGraph(t *testing.T) []Package {
	t.Helper()
	// `go test` runs with the go command on PATH.
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Imports,Error", Module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var g []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Package
			Error *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		// A directory of tests alone (test/e2e) has no non-test package.
		if p.Error != nil && !strings.Contains(p.Error.Err, "no non-test Go files") {
			t.Fatalf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		g = append(g, p.Package)
	}
	if len(g) < 20 {
		t.Fatalf("go list found %d packages", len(g))
	}
	return g
}
