package control

import (
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/proto"
)

// TestCountersClosedSets: every TLS refusal reason, every protocol code
// and the advisory type the relay may drop count under a declared
// counter (a code outside SPEC's under "other"), with the readable names
// of the counters before the registry (`unmap status`, scripts), and
// nothing counts as undeclared.
func TestCountersClosedSets(t *testing.T) {
	var c Counters
	for _, r := range tlsReasons {
		c.tls(r)
		if n := c.Get("tls_refused_" + strings.ReplaceAll(string(r), " ", "-")); n != 1 {
			t.Errorf("tls %s: %d", r, n)
		}
	}
	for code := proto.Code(0); !strings.HasPrefix(code.String(), "code-"); code++ {
		c.code(fFlowRefused, code)
		if n := c.Get("flow_refused_" + code.String()); n != 1 {
			t.Errorf("flow_refused_%s: %d", code, n)
		}
	}
	c.code(fOfferRefused, proto.Code(999))
	if c.Get("offer_refused_other") != 1 {
		t.Errorf("a code outside SPEC: %v", c.Snapshot())
	}
	c.dropped(proto.TypeICMPError)
	if c.Get("send_dropped_icmp-error") != 1 || c.vals().Unknown() != 0 {
		t.Errorf("%v", c.Snapshot())
	}
}
