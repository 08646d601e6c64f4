package edge

import "github.com/unmap-dev/unmap/metrics"

// A counter counted by a name its set does not declare panics in this
// package's tests instead of counting as unknown.
func init() { metrics.StrictForTests() }
