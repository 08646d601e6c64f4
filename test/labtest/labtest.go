// Package labtest builds network-namespace labs for tests: the privilege
// gate of test/priv (skip without root, fail when UNMAP_REQUIRE_PRIV=1),
// then lab.NewForTest. It lives under test/ so the lab, a feature of the
// unmap binary, links no test helper.
package labtest

import (
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/priv"
)

// New requires privileges, builds a lab with opts and tears it down in
// tb.Cleanup; a failed build fails tb.
func New(tb lab.TB, opts lab.Options) *lab.Lab {
	tb.Helper()
	priv.Require(tb)
	return lab.NewForTest(tb, opts)
}
