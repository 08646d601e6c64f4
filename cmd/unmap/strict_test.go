package main

import "github.com/unmap-dev/unmap/metrics"

// A counter counted by a name its set does not declare panics in this
// package's tests (the agents run in them) instead of counting as unknown.
func init() { metrics.StrictForTests() }
