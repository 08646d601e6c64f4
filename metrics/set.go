package metrics

import (
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Set is an agent's declared counters: families of Prometheus counters,
// each with at most one label whose values are a closed set fixed at
// declaration. Declarations are package-level (made once, at init); the
// values are per agent instance (Counters), so several agents in one
// process (tests) count apart.
type Set struct {
	families []*Family
	byName   map[string]Counter
	n        int
	unknown  Counter
}

// Family is one Prometheus counter (name ends in _total), with an
// optional label.
type Family struct {
	set        *Set
	Name, Help string
	Label      string // "" for a counter without labels
	values     []Counter
	desc       *prometheus.Desc
}

// Counter is a declared counter (a family, and a label value if the
// family has a label): the typed handle call sites count through.
type Counter struct {
	id    int
	fam   *Family
	name  string // readable name: the label value, or the family's short name
	label string // the label value
}

// IsZero reports whether c is the zero Counter (none declared): what a
// function returning a reason to count returns when there is none.
func (c Counter) IsZero() bool { return c.fam == nil }

// Name is the counter's readable name in `unmap status`.
func (c Counter) Name() string { return c.name }

// Family is the counter's family.
func (c Counter) Family() *Family { return c.fam }

// NewSet starts a set; unknownName is the Prometheus name of the counter
// that counts by-name lookups of names never declared (a bug: tests keep
// it at zero).
func NewSet(unknownName string) *Set {
	s := &Set{byName: map[string]Counter{}}
	s.unknown = s.Counter(unknownName, "unknown-counter", "Counts by a name not declared: a bug in the agent (report it).")
	return s
}

// Counter declares a counter without labels; name is its readable name.
func (s *Set) Counter(promName, name, help string) Counter {
	f := s.Family(promName, help, "")
	return f.add(name)
}

// Family declares a counter with one label; its values are declared with
// Value.
func (s *Set) Family(promName, help, label string) *Family {
	for _, f := range s.families {
		if f.Name == promName {
			panic(fmt.Sprintf("metrics: %s declared twice", promName))
		}
	}
	var labels []string
	if label != "" {
		labels = []string{label}
	}
	f := &Family{set: s, Name: promName, Help: help, Label: label,
		desc: prometheus.NewDesc(promName, help, labels, nil)}
	s.families = append(s.families, f)
	return f
}

// Value declares the counter of label value v; v is also its readable
// name in `unmap status`, so it is unique in the set.
func (f *Family) Value(v string) Counter { return f.ValueNamed(v, v) }

// ValueNamed declares the counter of label value v, shown in `unmap
// status` as name (unique in the set): for families whose label values
// repeat across families (protocol codes).
func (f *Family) ValueNamed(v, name string) Counter {
	if f.Label == "" {
		panic(fmt.Sprintf("metrics: %s has no label", f.Name))
	}
	c := f.add(name)
	c.label = v
	f.values[len(f.values)-1] = c
	f.set.byName[name] = c
	return c
}

// Values declares several label values at once.
func (f *Family) Values(vs ...string) []Counter {
	out := make([]Counter, len(vs))
	for i, v := range vs {
		out[i] = f.Value(v)
	}
	return out
}

func (f *Family) add(name string) Counter {
	s := f.set
	if _, dup := s.byName[name]; dup {
		panic(fmt.Sprintf("metrics: counter %q declared twice", name))
	}
	c := Counter{id: s.n, fam: f, name: name}
	s.n++
	s.byName[name] = c
	f.values = append(f.values, c)
	return c
}

// Lookup finds a counter by its readable name: for the few call sites
// that count a value chosen elsewhere from a closed set (an error's text,
// a reason passed down). A name not declared is a bug.
func (s *Set) Lookup(name string) (Counter, bool) {
	c, ok := s.byName[name]
	return c, ok
}

// Families are the declared families, in declaration order.
func (s *Set) Families() []*Family { return slices.Clone(s.families) }

// LabelValues are a family's declared label values.
func (f *Family) LabelValues() []string {
	out := make([]string, 0, len(f.values))
	for _, c := range f.values {
		if f.Label != "" {
			out = append(out, c.label)
		}
	}
	return out
}

// Names are the readable names of every counter of the set, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.byName))
	for n := range s.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// strict makes IncName panic on an undeclared name. Tests turn it on
// (StrictForTests, from an init in a _test.go file of each package that
// counts by name); the agents cannot ask testing.Testing(), as they link
// no package testing (test/deps).
var strict bool

// StrictForTests makes IncName panic on an undeclared name, so every test
// that reaches such a call site checks its set is closed. Call it from an
// init in a _test.go file, before any test runs.
func StrictForTests() { strict = true }

// Counters are one agent's values of a Set; safe for concurrent use, an
// increment is one atomic add.
type Counters struct {
	set *Set
	v   []atomic.Uint64
}

// New makes a set of values, all zero.
func (s *Set) New() *Counters { return &Counters{set: s, v: make([]atomic.Uint64, s.n)} }

// Inc counts one.
func (c *Counters) Inc(k Counter) { c.v[k.id].Add(1) }

// Add counts n.
func (c *Counters) Add(k Counter, n uint64) { c.v[k.id].Add(n) }

// Get is k's value.
func (c *Counters) Get(k Counter) uint64 { return c.v[k.id].Load() }

// IncName counts one under the declared counter named name; an
// undeclared name counts under the set's unknown counter instead (a bug).
//
// In a test binary that called StrictForTests an undeclared name panics
// instead, so every test that reaches such a call site checks its set is
// closed.
func (c *Counters) IncName(name string) {
	k, ok := c.set.byName[name]
	if !ok {
		if strict {
			panic(fmt.Sprintf("metrics: counter %q not declared", name))
		}
		k = c.set.unknown
	}
	c.Inc(k)
}

// Sum adds up the counters of family f.
func (c *Counters) Sum(f *Family) uint64 {
	var n uint64
	for _, k := range f.values {
		n += c.v[k.id].Load()
	}
	return n
}

// GetName is the counter named name (0 if none is).
func (c *Counters) GetName(name string) uint64 {
	if k, ok := c.set.byName[name]; ok {
		return c.Get(k)
	}
	return 0
}

// Unknown is the set's count of undeclared names (0 unless a bug).
func (c *Counters) Unknown() uint64 { return c.Get(c.set.unknown) }

// Snapshot is every counter that moved, by readable name: `unmap
// status`'s view.
func (c *Counters) Snapshot() map[string]uint64 {
	out := map[string]uint64{}
	for name, k := range c.set.byName {
		if n := c.v[k.id].Load(); n != 0 {
			out[name] = n
		}
	}
	return out
}

// Describe is prometheus.Collector's.
func (c *Counters) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.set.families {
		ch <- f.desc
	}
}

// Collect is prometheus.Collector's: every declared counter, zero or not,
// so a rate over a counter that starts moving has its first sample.
func (c *Counters) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.set.families {
		for _, k := range f.values {
			v := float64(c.v[k.id].Load())
			if f.Label == "" {
				ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, v)
			} else {
				ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, v, k.label)
			}
		}
	}
}
