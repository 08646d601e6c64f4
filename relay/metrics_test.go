package relay

import (
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/proto"
)

// TestCountedNamesDeclared: the values the relay counts by name (an
// error's text, a reason passed down to drop, a replay refusal's code)
// are declared counters; an undeclared one would count as a bug (and
// panics in tests: metrics.Counters.IncName).
func TestCountedNamesDeclared(t *testing.T) {
	names := []string{"bind-held", "early-held", "pinned-replaced", "pinned-stale", "pinned-not-replayed",
		"inbound-site-quota", "inbound-remote-quota", "replay-refused-public-address", "replay-refused-public-port",
		"held-untranslated", "held-inject-failed", "handshake-send-failed"}
	for _, err := range []error{errNoCarrier, errToken, errBound, errRebind, errNoProof, errLimited, errProto} {
		names = append(names, err.Error())
	}
	// dropFlow counts a TCP flow's end under the -tcp- form too.
	for _, why := range []string{"inbound-unreadable", "inbound-no-port", "inbound-port-share", "inbound-refused", "inbound-not-opened"} {
		names = append(names, why, strings.Replace(why, "inbound-", "inbound-tcp-", 1))
	}
	// A grant's refusal of a replayed entry, by its code.
	for code := proto.Code(1); !strings.HasPrefix(code.String(), "code-"); code++ {
		names = append(names, "replay-refused-"+code.String())
	}
	for _, n := range names {
		if _, ok := relayMetrics.Lookup(n); !ok {
			t.Errorf("%q is counted but not declared", n)
		}
	}
}
