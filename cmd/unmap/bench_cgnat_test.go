package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBenchCGNATFlags: values the CGNAT bench cannot use are refused,
// naming the figure, before anything is built or measured (and without
// root).
func TestBenchCGNATFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--small", "20000", "--large", "10000"}, "small"},
		{[]string{"--large", "2000000"}, "large"},
		{[]string{"--new-flows", "100000"}, "new flows"},
		{[]string{"--frames", "-1"}, "frames"},
		{[]string{"--rounds", "-2"}, "rounds"},
		{[]string{"--duration", "-1s"}, "goodput"},
		{[]string{"--short", "--frames", "10"}, "frames"},
	} {
		cmd := newBenchCGNATCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(c.args)
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error about %s", c.args, err, c.want)
		}
	}
}
