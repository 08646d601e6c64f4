package lab

import "github.com/unmap-dev/unmap/test/priv"

// newForTest is test/labtest.New for the lab's own tests, which cannot
// import labtest (it imports this package): the privilege gate, then
// NewForTest.
func newForTest(tb TB, opts Options) *Lab {
	tb.Helper()
	priv.Require(tb)
	return NewForTest(tb, opts)
}
