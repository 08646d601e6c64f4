// Package edge is the agent on the site's router: it holds the control
// channel to the relay, keeps the site's authoritative flow table, answers
// the datapath's misses and applies the site's inbound policy.
package edge

import (
	"context"
	"errors"
)

// Run runs the edge agent until ctx ends.
func Run(ctx context.Context, s *Settings) error {
	return errors.New("edge: the agent is not built yet (issue 5); use --check to validate a config")
}
