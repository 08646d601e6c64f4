package ops

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/e2e"
	"github.com/unmap-dev/unmap/test/labtest"
)

// TestAgentsWarnOfVethOffload: the lab as built turns TX checksum offload
// off on every veth (lab/offload.go); here the far ends of the
// edge's LAN link and of the relay's interface get it back on before the
// agents start, the setup that made an operator's agents forward nothing
// silently. Each agent must log one warning at start naming that peer
// and the fix, and none about its interfaces whose peers are right.
func TestAgentsWarnOfVethOffload(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	peers := []struct {
		in     lab.Role
		ifname string
	}{{lab.LAN, string(lab.Edge)}, {lab.Inet, string(lab.Relay)}}
	for _, p := range peers {
		if _, err := l.NS(p.in).Ethtool(p.ifname, [2]uint32{lab.EthtoolSTXCSUM, 1}); err != nil {
			t.Fatal(err)
		}
	}
	d := e2e.Deploy(t, lab.BuildUnmap(t))
	agents := []struct {
		p        *lab.Process
		ready    string
		fix, ifc string
	}{
		{d.StartRelay(t, l), "relay listening", "ethtool -K relay tx off", "if=inet"},
		{d.StartEdge(t, l), "edge running", "ethtool -K edge tx off", "if=lan"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, a := range agents {
		// The check runs before the agent says it is up.
		if _, err := a.p.WaitFor(ctx, a.ready); err != nil {
			t.Fatal(err)
		}
		var warned []string
		for _, line := range a.p.Output() {
			if strings.Contains(line, "interface check") {
				warned = append(warned, line)
			}
		}
		if len(warned) != 1 {
			t.Errorf("%s: %d interface warnings, want 1: %q", a.ready, len(warned), warned)
			continue
		}
		w := warned[0]
		if !strings.Contains(w, "level=WARN") || !strings.Contains(w, "TX checksum offload on") || !strings.Contains(w, a.ifc) || !strings.Contains(w, a.fix) {
			t.Errorf("%s: warning %q, want TX checksum offload, %s and fix %q", a.ready, w, a.ifc, a.fix)
		}
	}
}
