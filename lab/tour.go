package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"
)

// Expect is what a check should find.
type Expect bool

const (
	Works Expect = true  // the path exists
	Fails Expect = false // the path does not exist (yet)
)

func (e Expect) String() string {
	if e == Works {
		return "works"
	}
	return "fails"
}

// A Check is one row of the tour: something that should work, or should
// not, across the lab. Later work appends checks (unmap's own paths) and
// flips the expectations of the baseline ones as they start to work.
type Check struct {
	Name   string
	Expect Expect
	// Timeout bounds Run; zero means 3 s. Checks expected to fail
	// should fail fast (a refusal, an unreachable) rather than time out.
	Timeout time.Duration
	Run     func(ctx context.Context, e *Env) error
}

// Env is what checks run against: the lab and the servers the tour keeps
// running in it.
type Env struct {
	Lab *Lab
	// Echo servers (TCP and UDP, EchoPort) on srv4, srv6 and the lan
	// host, the ends of the baseline paths.
	Srv4, Srv6, LAN *EchoServer
	// Agents are unmap's relay and edge, for the rows that restart them;
	// nil in the baseline tour.
	Agents *Agents
	// Step, if set, hears of each check as it starts (the i-th of n), so
	// a command can show progress: a tour takes tens of seconds.
	Step func(i, n int, name string)
}

// NewEnv starts the tour's servers in l; Lab.Close stops them.
func NewEnv(l *Lab) (*Env, error) {
	e := &Env{Lab: l}
	var err error
	if e.Srv4, err = l.NS(Srv4).StartEcho(netip.AddrPortFrom(Srv4Addr, EchoPort)); err != nil {
		return nil, err
	}
	if e.Srv6, err = l.NS(Srv6).StartEcho(netip.AddrPortFrom(Srv6Addr, EchoPort)); err != nil {
		return nil, err
	}
	// The lan host listens on every address: today it has no address
	// an outside host could reach, later it gets one from SitePrefix.
	if e.LAN, err = l.NS(LAN).StartEcho(netip.AddrPortFrom(netip.IPv6Unspecified(), EchoPort)); err != nil {
		return nil, err
	}
	return e, nil
}

// Result is the outcome of one check.
type Result struct {
	Check   Check
	Err     error // nil when the path worked
	Elapsed time.Duration
	// Stopped is set when the tour's context ended before or while the
	// check ran: its outcome says nothing about the path.
	Stopped bool
}

// OK reports whether the check ran to the end and found what it expected.
func (r Result) OK() bool { return !r.Stopped && (r.Err == nil) == bool(r.Check.Expect) }

// RunTour runs the checks one after the other (they share the lab's
// conntrack tables, so running them at once could blur what each shows).
func RunTour(ctx context.Context, e *Env, checks []Check) []Result {
	res := make([]Result, 0, len(checks))
	for i, c := range checks {
		if e.Step != nil {
			e.Step(i+1, len(checks), c.Name)
		}
		if ctx.Err() != nil {
			res = append(res, Result{Check: c, Err: fmt.Errorf("not run: %w", ctx.Err()), Stopped: true})
			continue
		}
		t := c.Timeout
		if t <= 0 {
			t = 3 * time.Second
		}
		cctx, cancel := context.WithTimeout(ctx, t)
		start := time.Now()
		err := c.Run(cctx, e)
		cancel()
		res = append(res, Result{Check: c, Err: err, Elapsed: time.Since(start), Stopped: ctx.Err() != nil})
	}
	return res
}

// AllOK reports whether every check found what it expected.
func AllOK(rs []Result) bool {
	for _, r := range rs {
		if !r.OK() {
			return false
		}
	}
	return true
}

// WriteTable prints one row per check: its name, what was expected, the
// verdict (ok, or FAIL when the outcome differs from the expectation) and
// what happened, with the error when the path failed.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tEXPECTED\tRESULT\tTIME\tWHAT HAPPENED")
	for _, r := range rs {
		got := "works"
		if r.Err != nil {
			got = "fails: " + oneLine(r.Err.Error())
		}
		verdict := "ok"
		switch {
		case r.Stopped:
			verdict = "stopped"
		case !r.OK():
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Check.Name, r.Check.Expect, verdict, r.Elapsed.Round(time.Millisecond), got)
	}
	return tw.Flush()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}
