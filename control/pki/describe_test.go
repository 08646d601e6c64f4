package pki

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDescribe(t *testing.T) {
	ca, _ := NewCA("lab CA", Validity{})
	edge, _ := ca.IssueEdge("home", Validity{Length: time.Hour})
	relay, _ := ca.IssueRelay([]string{"relay.example"}, []netip.Addr{netip.MustParseAddr("198.51.100.6")}, Validity{})
	for _, tc := range []struct {
		got  string
		want []string
	}{
		{Describe(ca.Cert, time.Now()), []string{"kind:        CA", "subject:     lab CA", "(valid)"}},
		{Describe(edge.Cert, time.Now()), []string{"edge (client)", "site:        home", "issuer:      lab CA"}},
		{Describe(edge.Cert, time.Now().Add(2*time.Hour)), []string{"(EXPIRED)"}},
		{Describe(relay.Cert, time.Now()), []string{"relay (server)", "relay.example", "198.51.100.6", "sha256:"}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.got, w) {
				t.Errorf("description lacks %q:\n%s", w, tc.got)
			}
		}
	}
}
